"""An administrator revokes a lost terminal from the web: the next frame is refused, the
certificate is on the CRL, the action is in the audit trail's route table, and a scoped admin
can neither see nor revoke another station's terminals."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509

from protocol import Position, ServerEndpoint
from provisioning.pki import CRL_FILE, StationCA
from server.devices import DeviceRegistry
from server.ingest import Ingest
from server.keyring import StoreKeyRing
from server.org.store import OrgStore
from server.sqlite_store import SqliteStore
from server.web import device_routes
from server.web.access import Principal, Role, audit_of
from server.web.keys import DEVICES, ORG

from .org.support import build
from .support import SERVER_KEY, T0, Terminal, api_app, device_key, device_record, fix

TOKENS = {
    "admin": Principal("Admin", Role.ADMIN),
    "admin-ns": Principal("Admin of the north", Role.ADMIN, "ns"),
    "officer": Principal("Officer", Role.OFFICER),
}


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_revoke_from_the_web(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "yijing.db")
    orgs = OrgStore(tmp_path / "org.db")
    build(orgs)  # t-1 is in ft-s1, t-2 in ns-s1
    terminals = {d: Terminal(d) for d in ("t-1", "t-2")}
    for t in terminals.values():
        store.add_device(device_record(t.identity), device_key(t.identity))
    ca = StationCA.create(tmp_path / "pki")
    ca.issue_terminal("t-1")
    keyring = StoreKeyRing(store)
    registry = DeviceRegistry(store, keyring, tmp_path / "pki", clock=lambda: T0 / 1000)
    ingest = Ingest(
        store,
        keyring,
        ServerEndpoint(signing_key=SERVER_KEY, key_id=1),
        publish=lambda out: None,
        clock=lambda: T0 / 1000,
    )
    app = api_app(
        tmp_path,
        store,
        TOKENS,
        routes=[device_routes.routes],
        services={DEVICES: registry, ORG: orgs},
    )

    async def main() -> None:
        async with TestClient(TestServer(app)) as client:
            listed = await (await client.get("/api/v1/devices", headers=h("admin"))).json()
            assert [d["device_id"] for d in listed["devices"]] == ["t-1", "t-2"]
            north = await (await client.get("/api/v1/devices", headers=h("admin-ns"))).json()
            assert [d["device_id"] for d in north["devices"]] == ["t-2"]

            url = "/api/v1/devices/t-1/revoke"
            officer = await client.post(url, json={"reason": "lost"}, headers=h("officer"))
            assert officer.status == 403
            # Another station's terminal is "not there" for a scoped admin.
            other = await client.post(url, json={"reason": "lost"}, headers=h("admin-ns"))
            assert other.status == 404
            bad = await client.post(url, json={"reason": ""}, headers=h("admin"))
            assert bad.status == 400 and "reason" in (await bad.json())["error"]
            ghost = await client.post(
                "/api/v1/devices/ghost/revoke", json={"reason": "x"}, headers=h("admin")
            )
            assert ghost.status == 404

            done = await client.post(url, json={"reason": "lost on patrol"}, headers=h("admin"))
            assert done.status == 200, await done.text()
            assert (await done.json())["revoked_ms"] == T0

    asyncio.run(main())

    # Refused from the very next frame, counted as Revoked.
    topic, payload = terminals["t-1"].frame(Position(fix=fix(T0)), 1)
    assert ingest.process([(topic, payload, T0)]) == []
    assert ingest.stats.rejected == {("t-1", "Revoked: party"): 1}
    # Its certificate is on the CRL the broker reads.
    crl = x509.load_pem_x509_crl((tmp_path / "pki" / CRL_FILE).read_bytes())
    assert len(list(crl)) == 1
    assert StationCA.load(tmp_path / "pki").revoked_names() == {"t-1"}
    orgs.close()
    store.close()


def test_revoking_is_in_the_audit_trail() -> None:
    assert audit_of(device_routes.revoke_device) == "terminal.revoke"
