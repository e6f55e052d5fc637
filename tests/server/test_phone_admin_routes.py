"""The admin's phone enrolment over REST (``/api/v1/phones``): admins only, fields named when
refused, an unknown volunteer 404, the answer carrying the app's settings and QR code once,
re-issue on enrolling again, revocation, and a scoped admin who can neither enrol nor see nor
revoke another district's phones."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from server.org.store import OrgStore
from server.phones.ingress import PhoneIngress
from server.phones.service import PhoneEndpoints, Phones
from server.sqlite_store import SqliteStore
from server.web import phone_routes
from server.web.access import Principal, Role, audit_of
from server.web.keys import ORG, PHONES

from .org.support import build
from .support import T0, api_app

TOKENS = {
    "admin": Principal("Admin", Role.ADMIN),
    "admin-ns": Principal("Admin of Nanshan", Role.ADMIN, "ns"),
    "officer": Principal("Officer", Role.OFFICER),
}
PHONE_FIELDS = {
    "phone_id", "volunteer_id", "unit_id", "app", "created_ms", "revoked_ms", "mqtt_user",
    "encrypted",
}  # fmt: skip


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _app(tmp_path: Path) -> tuple[Any, Phones, OrgStore, SqliteStore]:
    store = SqliteStore(tmp_path / "yijing.db")
    orgs = OrgStore(tmp_path / "org.db")
    build(orgs)  # li in ft-s1-g1 and wang in ft-s1 (Futian), chen in ns-s1 (Nanshan)
    ingress = PhoneIngress(store, tmp_path / "phones.db", clock=lambda: T0 / 1000)
    phones = Phones(
        tmp_path, store, orgs, endpoints=PhoneEndpoints(), ingress=ingress,
        clock=lambda: T0 / 1000,
    )  # fmt: skip
    app = api_app(
        tmp_path,
        store,
        TOKENS,
        routes=[phone_routes.routes],
        services={PHONES: phones, ORG: orgs},
    )
    return app, phones, orgs, store


def _run(tmp_path: Path, test: Any) -> Phones:
    app, phones, orgs, store = _app(tmp_path)

    async def main() -> None:
        async with TestClient(TestServer(app)) as client:
            await test(client)

    try:
        asyncio.run(main())
    finally:
        orgs.close()
        store.close()
    return phones


def test_admins_only(tmp_path: Path) -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        body = {"volunteer_id": "li", "app": "owntracks"}
        calls: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", "/api/v1/phones", {}),
            ("POST", "/api/v1/phones", {"json": body}),
            ("POST", "/api/v1/phones/p-1/revoke", {"json": {}}),
        ]
        for method, url, kw in calls:
            anonymous = await client.request(method, url, **kw)
            assert anonymous.status == 401, (method, url)
            officer = await client.request(method, url, headers=h("officer"), **kw)
            assert officer.status == 403, (method, url)
        # Nothing was enrolled by those.
        listed = await (await client.get("/api/v1/phones", headers=h("admin"))).json()
        assert listed == {"phones": []}

    _run(tmp_path, test)


def test_refusals_name_the_field(tmp_path: Path) -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        async def enrol(body: Any) -> tuple[int, str]:
            res = await client.post("/api/v1/phones", json=body, headers=h("admin"))
            doc = await res.json()
            return res.status, doc.get("error", "")

        status, msg = await enrol({"volunteer_id": "li", "app": "signal"})
        assert status == 400 and msg.startswith("app"), msg
        assert "owntracks" in msg and "traccar" in msg
        status, msg = await enrol({"app": "owntracks"})
        assert status == 400 and msg.startswith("volunteer_id"), msg
        status, msg = await enrol({"volunteer_id": "li", "app": "owntracks", "encrypt": "yes"})
        assert status == 400 and msg.startswith("encrypt"), msg
        status, msg = await enrol({"volunteer_id": "li", "app": "owntracks", "colour": "red"})
        assert status == 400 and "colour" in msg, msg
        status, msg = await enrol({"volunteer_id": "ghost", "app": "owntracks"})
        assert status == 404 and "ghost" in msg, msg
        # None of it enrolled anything.
        listed = await (await client.get("/api/v1/phones", headers=h("admin"))).json()
        assert listed == {"phones": []}

    _run(tmp_path, test)


def test_enrol_reissue_and_revoke(tmp_path: Path) -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        res = await client.post(
            "/api/v1/phones",
            json={"volunteer_id": "li", "app": "owntracks", "encrypt": True},
            headers=h("admin"),
        )
        assert res.status == 200, await res.text()
        doc = await res.json()
        assert set(doc) == {"phone", "config", "qr", "qr_svg"}
        phone = doc["phone"]
        assert set(phone) == PHONE_FIELDS
        assert phone["volunteer_id"] == "li" and phone["unit_id"] == "ft-s1-g1"
        assert phone["app"] == "owntracks" and phone["encrypted"] is True
        assert phone["revoked_ms"] is None and phone["created_ms"] == T0
        config = doc["config"]
        assert config.get("username") == phone["mqtt_user"]
        assert config.get("password") and config.get("encryptionKey")
        # No broker for phones configured: HTTP mode, to this server's OwnTracks door.
        assert str(config.get("url", "")).endswith("/pub/owntracks")
        assert doc["qr"] and "<svg" in doc["qr_svg"]

        # Listed without its secrets.
        listed = (await (await client.get("/api/v1/phones", headers=h("admin"))).json())["phones"]
        assert [p["phone_id"] for p in listed] == [phone["phone_id"]]
        assert set(listed[0]) == PHONE_FIELDS

        # Enrolling again re-issues the same phone a new code: the one before stops working.
        again = await (
            await client.post(
                "/api/v1/phones",
                json={"volunteer_id": "li", "app": "owntracks", "encrypt": True},
                headers=h("admin"),
            )
        ).json()
        assert again["phone"]["phone_id"] == phone["phone_id"]
        assert again["phone"]["created_ms"] == phone["created_ms"]
        assert again["qr"] != doc["qr"]
        assert again["config"]["password"] != config["password"]
        issued.extend([config["password"], again["config"]["password"]])

        traccar = await client.post(
            "/api/v1/phones", json={"volunteer_id": "wang", "app": "traccar"}, headers=h("admin")
        )
        assert traccar.status == 200, await traccar.text()
        tdoc = await traccar.json()
        assert tdoc["phone"]["app"] == "traccar" and tdoc["phone"]["unit_id"] == "ft-s1"
        assert set(tdoc["config"]) >= {"server_url", "device_id"}
        assert tdoc["config"]["server_url"].endswith("/pub/osmand")
        assert tdoc["config"]["device_id"] in tdoc["qr"]

        # Revoke li's current phone.
        current = again["phone"]["phone_id"]
        revoked = await client.post(f"/api/v1/phones/{current}/revoke", json={}, headers=h("admin"))
        assert revoked.status == 200, await revoked.text()
        rdoc = await revoked.json()
        assert rdoc["phone_id"] == current and rdoc["revoked_ms"] == T0
        assert set(rdoc) == PHONE_FIELDS
        ghost = await client.post("/api/v1/phones/ghost/revoke", json={}, headers=h("admin"))
        assert ghost.status == 404
        after = {
            p["phone_id"]: p
            for p in (await (await client.get("/api/v1/phones", headers=h("admin"))).json())[
                "phones"
            ]
        }
        assert after[current]["revoked_ms"] == T0
        assert after[tdoc["phone"]["phone_id"]]["revoked_ms"] is None

        # Enrolling a revoked phone again issues a new code and lifts the revocation.
        back = await client.post(
            "/api/v1/phones", json={"volunteer_id": "li", "app": "owntracks"}, headers=h("admin")
        )
        assert back.status == 200, await back.text()
        bdoc = await back.json()
        assert bdoc["phone"]["revoked_ms"] is None
        issued.append(bdoc["config"]["password"])

    issued: list[str] = []  # li's passwords, in the order issued
    phones = _run(tmp_path, test)
    registry = phones.ingress.registry
    (li,) = [p for p in registry.phones() if p.volunteer_id == "li"]
    assert [registry.verify_password(li.mqtt_user, p) for p in issued] == [False, False, True]
    phones.ingress.close_registry()


def test_a_scoped_admin_stays_in_scope(tmp_path: Path) -> None:
    async def test(client: TestClient[Any, Any]) -> None:
        futian = await client.post(
            "/api/v1/phones", json={"volunteer_id": "li", "app": "owntracks"}, headers=h("admin")
        )
        assert futian.status == 200, await futian.text()
        li_phone = (await futian.json())["phone"]["phone_id"]

        # Nanshan's admin cannot enrol a Futian volunteer's phone...
        outside = await client.post(
            "/api/v1/phones",
            json={"volunteer_id": "li", "app": "traccar"},
            headers=h("admin-ns"),
        )
        assert outside.status == 403
        assert "ft-s1-g1" in (await outside.json())["error"]
        # ...but can enrol one of Nanshan's.
        inside = await client.post(
            "/api/v1/phones", json={"volunteer_id": "chen", "app": "traccar"}, headers=h("admin-ns")
        )
        assert inside.status == 200, await inside.text()
        chen_phone = (await inside.json())["phone"]["phone_id"]

        # Each sees their own: the unscoped admin both, Nanshan's only Nanshan's.
        everyone = await (await client.get("/api/v1/phones", headers=h("admin"))).json()
        assert {p["phone_id"] for p in everyone["phones"]} == {li_phone, chen_phone}
        north = await (await client.get("/api/v1/phones", headers=h("admin-ns"))).json()
        assert [p["phone_id"] for p in north["phones"]] == [chen_phone]

        # Another district's phone is "not there" for revocation, and stays active.
        other = await client.post(
            f"/api/v1/phones/{li_phone}/revoke", json={}, headers=h("admin-ns")
        )
        assert other.status == 404
        still = await (await client.get("/api/v1/phones", headers=h("admin"))).json()
        assert {p["phone_id"]: p["revoked_ms"] for p in still["phones"]}[li_phone] is None

    _run(tmp_path, test)


def test_enrolment_and_revocation_are_audited() -> None:
    assert audit_of(phone_routes.enrol_phone) == "phone.enrol"
    assert audit_of(phone_routes.revoke_phone) == "phone.revoke"
