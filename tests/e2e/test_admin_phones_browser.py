"""The admin page's phones card (/admin) in real headless Chromium against a whole server: an
admin signed in with a password pages through 105 enrolled phones, enrols a volunteer's phone
for OwnTracks, sees the QR code (an SVG image under the page's CSP) and the settings in words
with the "shown once" note, finds the new row, switches between 中文 and English, revokes the
phone after a confirmation and sees the row revoked; then enrols a phone for Traccar Client."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from provisioning.phones import PhoneApp
from server.org.model import Unit, UnitLevel, Volunteer
from tests.server.accounts.support import PASSWORD

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Response

    from tests.conftest import ServerThread
    from yijing.broker import LocalBroker

pytestmark = pytest.mark.e2e

ENROLLED = 105  # more than one page of 100 rows
T_ENROLLED = 1_767_225_600_000  # 2026-01-01T00:00Z


def _sign_in(browser: Browser, url: str, username: str, *, locale: str) -> Page:
    page = browser.new_page(locale=locale)
    page.goto(f"{url}/login?next=/admin")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url(url + "/admin")
    return page


def _is_enrolment(response: Response) -> bool:
    return response.url.endswith("/api/v1/phones") and response.request.method == "POST"


def _settings(page: Page, dl: str) -> dict[str, str]:
    """The <dl> of settings as {term: value}."""
    pairs: list[Any] = page.eval_on_selector(
        dl, "dl => [...dl.querySelectorAll('dt')].map(dt => [dt.textContent, "
        "dt.nextElementSibling.textContent])",
    )  # fmt: skip
    return dict(pairs)


def test_admin_enrols_and_revokes_a_phone(
    broker: LocalBroker, server_factory: Callable[..., ServerThread], browser: Browser
) -> None:
    server = server_factory(broker).server
    server.accounts.create("root", PASSWORD, role="admin", display_name="管理员")
    org = server.org
    org.put_unit(Unit("sz", "深圳市", UnitLevel.CITY))
    org.put_unit(Unit("ft", "福田区", UnitLevel.DISTRICT, "sz"))
    org.put_unit(Unit("ftpcs", "福田派出所", UnitLevel.STATION, "ft"))
    org.put_volunteer(Volunteer("v1", "李明", "ftpcs"))
    org.put_volunteer(Volunteer("v2", "王芳", "ftpcs"))
    # A station's worth of phones enrolled before (as `yijing provision phone` does).
    registry = server.phones.ingress.registry
    for i in range(1, ENROLLED + 1):
        org.put_volunteer(Volunteer(f"b-{i:03d}", f"队员{i}", "ftpcs"))
        registry.enrol(
            volunteer_id=f"b-{i:03d}", unit_id="ftpcs", app=PhoneApp.TRACCAR, now_ms=T_ENROLLED
        )
    server.phones.ingress.close_registry()
    url = server.url

    page = _sign_in(browser, url, "root", locale="zh-CN")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # A refused image or script would be reported on the console as a CSP violation.
    page.on("console", lambda m: errors.append(m.text) if "Security Policy" in m.text else None)
    page.wait_for_selector("#phones:not([hidden])")
    assert page.locator("#phones-h").text_content() == "手机"
    assert page.locator("#phone-enrol").text_content() == "登记并生成二维码"

    # One page of rows, "more" for the rest, names from the organisation.
    page.wait_for_function(
        f"() => document.querySelector('#phone-count').textContent.includes('共 {ENROLLED} 部')"
    )
    rows = page.locator("#phone-rows tr")
    assert rows.count() == 100
    more = page.locator("#phone-more")
    assert more.text_content() == "再显示 5 部（剩余 5 部）"
    page.wait_for_function(
        "() => document.querySelector('#phone-rows tr').textContent.includes('队员1')"
    )
    more.click()
    assert rows.count() == ENROLLED and more.is_hidden()

    # Traccar Client cannot encrypt: the box is off for it, on again for OwnTracks.
    box = page.locator("#phone-encrypt")
    assert box.is_checked() and box.is_enabled()
    page.select_option("#phone-app", "traccar")
    assert box.is_disabled() and not box.is_checked()
    page.select_option("#phone-app", "owntracks")
    assert box.is_enabled() and box.is_checked()

    # Refused: the server's sentence beside the form, framed in Chinese.
    page.fill("#phone-volunteer", "nobody")
    page.click("#phone-enrol")
    page.wait_for_function(
        "() => document.querySelector('#phone-form-error').textContent.length > 0"
    )
    refused = page.locator("#phone-form-error").text_content() or ""
    assert refused.startswith("登记失败：") and "nobody" in refused
    assert page.locator("#phone-issued").is_hidden()

    # Enrol 李明's phone for OwnTracks, payloads encrypted.
    page.fill("#phone-volunteer", "v1")
    assert page.locator("#phone-reissue").text_content() == ""
    with page.expect_response(_is_enrolment) as answer:
        page.click("#phone-enrol")
    doc = answer.value.json()
    phone_id = doc["phone"]["phone_id"]
    assert doc["phone"]["encrypted"] is True
    page.wait_for_selector("#phone-issued:not([hidden])")
    assert page.locator("#phone-form-error").text_content() == ""
    heading = page.locator("#phone-issued-h").text_content() or ""
    assert phone_id in heading and "李明" in heading and "OwnTracks" in heading
    assert "只显示这一次" in (page.locator("#phone-issued .ad-warn").text_content() or "")

    # The QR code: the server's SVG as an image (decoded: the CSP let it through), not markup.
    qr = page.locator("#phone-qr")
    src = qr.get_attribute("src") or ""
    prefix = "data:image/svg+xml;base64,"
    assert src.startswith(prefix)
    image = base64.b64decode(src[len(prefix) :]).decode()
    # The server's SVG, its root tag made a document's own (namespace, viewBox) if need be.
    body = doc["qr_svg"].split(">", 1)[1]
    assert image.endswith(body) and 'xmlns="http://www.w3.org/2000/svg"' in image
    page.wait_for_function(
        "() => { const i = document.querySelector('#phone-qr'); "
        "return i.complete && i.naturalWidth > 0; }"
    )
    assert qr.get_attribute("alt") == "配置 OwnTracks 的二维码"
    assert page.locator("#phone-issued svg").count() == 0

    # The settings in words: HTTP mode to this server (no phone broker configured).
    config = doc["config"]
    shown = _settings(page, "#phone-settings")
    assert shown["连接方式"] == "HTTP"
    assert shown["地址（URL）"] == config["url"] == url + "/pub/owntracks"
    assert shown["用户名"] == config["username"] == doc["phone"]["mqtt_user"]
    assert shown["设备 ID"] == config["deviceId"]
    assert shown["加密上报"] == "是"
    assert config["password"] not in json.dumps(shown)
    # The secrets are folded away until asked for.
    assert page.locator("#phone-secret-list").is_hidden()
    page.click("#phone-secrets summary")
    secrets = _settings(page, "#phone-secret-list")
    assert secrets["密码"] == config["password"]
    assert secrets["加密密钥"] == config["encryptionKey"]
    assert secrets["二维码内容"] == doc["qr"]

    # The new row, paged on to (it sorts after the 105 others), and the form ready again.
    row = page.locator(f"#phone-rows tr[data-phone='{phone_id}']")
    row.wait_for()
    text = row.text_content() or ""
    for part in ("李明 (v1)", "ftpcs", "OwnTracks", "是", "正常"):
        assert part in text, (part, text)
    assert page.locator("#phone-volunteer").input_value() == ""
    assert server.phones.get(phone_id) is not None
    # Typing the same volunteer again says enrolling re-issues the code.
    page.fill("#phone-volunteer", "v1")
    assert phone_id in (page.locator("#phone-reissue").text_content() or "")
    assert "重新签发" in (page.locator("#phone-reissue").text_content() or "")
    page.fill("#phone-volunteer", "")

    # English and back: the card's labels, the panel, the rows follow.
    page.click("#lang")
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.locator("#phones-h").text_content() == "Phones"
    assert page.locator("#phone-enrol").text_content() == "Enrol and show the QR code"
    assert page.locator("#phone-table th").all_text_contents() == [
        "Phone", "Volunteer", "Unit", "App", "Enrolled", "Encrypted", "Status", "Actions",
    ]  # fmt: skip
    assert "Encrypt payloads" in (page.locator("#phone-form").text_content() or "")
    warn = page.locator("#phone-issued .ad-warn").text_content() or ""
    assert warn.startswith("Shown once") and "enrol again" in warn
    assert qr.get_attribute("alt") == "QR code configuring OwnTracks"
    assert _settings(page, "#phone-settings")["URL"] == config["url"]
    assert "Yes" in (row.text_content() or "") and "Active" in (row.text_content() or "")
    assert page.locator("#phone-count").text_content() == (
        f"{ENROLLED + 1} phones, 0 revoked; {ENROLLED + 1} match, {ENROLLED + 1} shown"
    )
    page.click("#lang")
    assert page.locator("#phones-h").text_content() == "手机"
    assert page.locator("#phone-table th").all_text_contents() == [
        "手机编号", "义警", "单位", "应用", "登记时间", "加密", "状态", "操作",
    ]  # fmt: skip

    # Revoke, after a confirmation: cancelling changes nothing.
    row.locator("button[data-act='revoke']").click()
    dialog = page.locator("#phone-revoke-dialog")
    assert dialog.is_visible()
    assert phone_id in (page.locator("#phone-revoke-title").text_content() or "")
    assert "拒收" in (dialog.text_content() or "")
    page.click("#phone-revoke-cancel")
    assert dialog.is_hidden()
    phone = server.phones.get(phone_id)
    assert phone is not None and phone.revoked_ms is None
    row.locator("button[data-act='revoke']").click()
    page.click("#phone-revoke-confirm")
    page.wait_for_selector(f"#phone-rows tr[data-phone='{phone_id}'].off")
    assert dialog.is_hidden()
    assert "已吊销" in (row.text_content() or "")
    assert row.locator("button").count() == 0
    assert page.locator("#phone-ok").text_content() == f"手机 {phone_id} 已吊销。"
    # The code shown for it is dead: the panel is gone with it.
    assert page.locator("#phone-issued").is_hidden()
    phone = server.phones.get(phone_id)
    assert phone is not None and phone.revoked_ms is not None
    page.select_option("#phone-status", "revoked")
    page.wait_for_function("() => document.querySelectorAll('#phone-rows tr').length === 1")
    page.click("#lang")
    assert "Revoked" in (row.text_content() or "")
    assert page.locator("#phone-ok").text_content() == f"Phone {phone_id} revoked."
    page.click("#lang")
    page.select_option("#phone-status", "")

    # Traccar Client for 王芳: the server URL and the device identifier, no encryption.
    page.fill("#phone-volunteer", "v2")
    page.select_option("#phone-app", "traccar")
    with page.expect_response(_is_enrolment) as answer:
        page.click("#phone-enrol")
    tdoc = answer.value.json()
    page.wait_for_function(
        "id => (document.querySelector('#phone-issued-h').textContent || '').includes(id)",
        arg=tdoc["phone"]["phone_id"],
    )
    shown = _settings(page, "#phone-settings")
    assert shown["服务器地址"] == tdoc["config"]["server_url"] == url + "/pub/osmand"
    assert shown["设备标识"] == tdoc["config"]["device_id"]
    assert tdoc["phone"]["encrypted"] is False
    assert "Traccar Client" in (page.locator("#phone-how").text_content() or "")
    trow = page.locator(f"#phone-rows tr[data-phone='{tdoc['phone']['phone_id']}']")
    trow.wait_for()
    assert "Traccar Client" in (trow.text_content() or "") and "否" in (trow.text_content() or "")
    # Done: the code leaves the page.
    page.click("#phone-issued-done")
    assert page.locator("#phone-issued").is_hidden()
    assert qr.get_attribute("src") is None

    assert errors == []
    page.close()
    server.phones.ingress.close_registry()  # this thread's, opened by phones.get


def test_the_phones_card_is_for_administrators(
    broker: LocalBroker, server_factory: Callable[..., ServerThread], browser: Browser
) -> None:
    server = server_factory(broker).server
    server.accounts.create("duty", PASSWORD, role="officer", display_name="值班员甲")
    page = _sign_in(browser, server.url, "duty", locale="en-US")
    page.wait_for_selector("#gate:not([hidden])")
    assert page.locator("#phones").is_hidden()
    status = page.evaluate("async () => (await fetch('/api/v1/phones')).status")
    assert status == 403
    page.close()
