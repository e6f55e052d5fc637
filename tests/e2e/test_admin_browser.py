"""The administrator's page (/admin) in real headless Chromium against a whole server: an admin
signed in with a password creates an officer's account through the form, disables it, finds a
terminal among 1,200 registered ones (the table holds one page of 100 rows at a time) with the
filter and revokes it (reason, confirmation); the page switches between 中文 and English. An
officer opening /admin is told it is for administrators only, an anonymous visitor to sign in."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from provisioning import new_device
from tests.server.accounts.support import PASSWORD

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from tests.conftest import ServerThread
    from yijing.broker import LocalBroker

pytestmark = pytest.mark.e2e

TERMINALS = 1200  # a district's worth: twelve pages of 100 rows


def _sign_in(browser: Browser, url: str, username: str, *, locale: str) -> Page:
    page = browser.new_page(locale=locale)
    page.goto(f"{url}/login?next=/admin")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url(url + "/admin")
    return page


def _devices(url: str, page: Page) -> dict[str, dict[str, Any]]:
    """GET /api/v1/devices with the page's own session cookie (from outside the browser)."""
    cookies = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())
    req = urllib.request.Request(f"{url}/api/v1/devices", headers={"Cookie": cookies})
    with urllib.request.urlopen(req, timeout=10) as res:
        doc = json.load(res)
    return {d["device_id"]: d for d in doc["devices"]}


def test_admin_manages_accounts_and_revokes_a_terminal(
    broker: LocalBroker, server_factory: Callable[..., ServerThread], browser: Browser
) -> None:
    server = server_factory(broker).server
    server.accounts.create("root", PASSWORD, role="admin", display_name="管理员")
    for i in range(1, TERMINALS + 1):
        server.register_device(new_device(f"ft-{i:04d}"), label=f"对讲机 {i}")
    url = server.url

    page = _sign_in(browser, url, "root", locale="zh-CN")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.wait_for_selector("#accounts:not([hidden])")
    assert page.locator("h1").text_content() == "义警 · 系统管理"
    assert page.locator("#accounts-h").text_content() == "账户"
    assert page.locator("#gate").is_hidden()
    assert page.locator("#account-rows tr[data-user='root']").count() == 1

    # A refused create: the server's sentence beside the form, framed in Chinese.
    page.fill("#new-username", "li.officer")
    page.fill("#new-password", "short")
    page.select_option("#new-role", "officer")
    page.click("#create")
    page.wait_for_function("() => document.querySelector('#create-error').textContent.length > 0")
    refused = page.locator("#create-error").text_content() or ""
    assert refused.startswith("创建失败：") and "password" in refused and "10" in refused

    # The real one: an officer scoped to nothing (the whole organisation).
    page.fill("#new-username", "li.officer")
    page.fill("#new-display", "李警官")
    page.fill("#new-password", PASSWORD)
    page.select_option("#new-role", "officer")
    page.click("#create")
    row = page.locator("#account-rows tr[data-user='li.officer']")
    row.wait_for()
    assert page.locator("#create-error").text_content() == ""
    assert "李警官" in (row.text_content() or "") and "值班员" in (row.text_content() or "")
    made = server.accounts.get("li.officer")
    assert made.role.value == "officer" and made.display_name == "李警官" and not made.disabled

    # Disable it (a PATCH with the CSRF header, or the server would have said 403).
    row.locator("button[data-act='disable']").click()
    page.wait_for_selector("#account-rows tr[data-user='li.officer'].off")
    assert "已停用" in (row.text_content() or "")
    assert server.accounts.get("li.officer").disabled
    # The admin cannot disable themself: the button is off on their own row.
    own = page.locator("#account-rows tr[data-user='root'] button[data-act='disable']")
    assert own.is_disabled()

    # Terminals: one page of rows, "more" for the next, the filter over all of them.
    page.wait_for_function(
        f"() => document.querySelector('#dev-count').textContent.includes('{TERMINALS}')"
    )
    assert page.locator("#device-rows tr").count() == 100
    page.click("#dev-more")
    assert page.locator("#device-rows tr").count() == 200
    page.fill("#dev-filter", "ft-0042")
    page.wait_for_function("() => document.querySelectorAll('#device-rows tr').length === 1")
    target = page.locator("#device-rows tr[data-device='ft-0042']")
    assert "正常" in (target.text_content() or "")

    # Revoke: a reason is required, the dialog says it is final, then it is done.
    target.locator("button[data-act='revoke']").click()
    dialog = page.locator("#revoke-dialog")
    assert dialog.is_visible()
    assert "ft-0042" in (page.locator("#revoke-title").text_content() or "")
    assert "不可撤销" in (dialog.text_content() or "")
    page.click("#revoke-confirm")
    assert page.locator("#revoke-error").text_content() == "请填写吊销原因。"
    assert _devices(url, page)["ft-0042"]["revoked_ms"] is None  # nothing sent yet
    page.fill("#revoke-reason", "巡逻时遗失")
    page.click("#revoke-confirm")
    page.wait_for_selector("#device-rows tr[data-device='ft-0042'].off")
    assert dialog.is_hidden()
    revoked = _devices(url, page)
    assert revoked["ft-0042"]["revoked_ms"] is not None
    assert revoked["ft-0041"]["revoked_ms"] is None and revoked["ft-0043"]["revoked_ms"] is None
    assert "已吊销" in (target.text_content() or "")
    assert target.locator("button").count() == 0
    assert server.keyring.revoked_at("ft-0042") is not None  # the next frame is refused

    page.select_option("#dev-status", "revoked")
    page.fill("#dev-filter", "")
    page.wait_for_function("() => document.querySelectorAll('#device-rows tr').length === 1")

    # English and back: the labels follow, and so do the rows and the messages.
    page.click("#lang")
    assert page.locator("h1").text_content() == "Yijing · Administration"
    assert page.locator("#accounts-h").text_content() == "Accounts"
    assert page.locator("#terminals-h").text_content() == "Terminals"
    assert page.locator("#create").text_content() == "Create account"
    assert page.evaluate("document.documentElement.lang") == "en"
    assert "Revoked" in (target.text_content() or "")
    assert "Disabled" in (row.text_content() or "")
    assert page.locator("#dev-ok").text_content() == "Terminal ft-0042 revoked."
    page.click("#lang")
    assert page.locator("h1").text_content() == "义警 · 系统管理"
    assert page.locator("#create").text_content() == "创建账户"
    assert page.locator("#dev-ok").text_content() == "终端 ft-0042 已吊销。"

    # Enable the account again and change its role through the edit form.
    row.locator("button[data-act='enable']").click()
    page.wait_for_selector("#account-rows tr[data-user='li.officer']:not(.off)")
    row.locator("button[data-act='edit']").click()
    page.select_option("#edit-role", "inspector")
    page.click("#edit-save")
    page.wait_for_selector("#edit-form", state="hidden")
    assert "督查" in (row.text_content() or "")
    after = server.accounts.get("li.officer")
    assert after.role.value == "inspector" and not after.disabled

    # The live map's header links here for admins.
    page.goto(url + "/")
    page.wait_for_selector("#admin-nav:not([hidden])")
    page.click("#admin-nav a")
    page.wait_for_url(url + "/admin")
    page.wait_for_selector("#terminals:not([hidden])")

    assert errors == []
    page.close()


def test_an_officer_is_told_the_page_is_for_administrators(
    broker: LocalBroker, server_factory: Callable[..., ServerThread], browser: Browser
) -> None:
    server = server_factory(broker).server
    server.accounts.create("duty", PASSWORD, role="officer", display_name="值班员甲")
    anonymous = browser.new_page(locale="en-US")
    anonymous.goto(server.url + "/admin")
    anonymous.wait_for_selector("#gate:not([hidden])")
    assert anonymous.locator("#gate-title").text_content() == "Sign in first"
    assert anonymous.locator("#gate-login").get_attribute("href") == "/login?next=/admin"
    anonymous.close()

    page = _sign_in(browser, server.url, "duty", locale="en-US")
    page.wait_for_selector("#gate:not([hidden])")
    assert page.locator("#gate-title").text_content() == "Administrators only"
    assert "duty" in (page.locator("#gate-text").text_content() or "")
    assert page.locator("#accounts").is_hidden() and page.locator("#terminals").is_hidden()
    status = page.evaluate("async () => (await fetch('/api/v1/accounts')).status")
    assert status == 403
    page.click("#lang")
    assert page.locator("#gate-title").text_content() == "仅限管理员"
    # And the map's header shows the administrators' link to admins only.
    page.goto(server.url + "/")
    page.wait_for_function("() => document.querySelector('#me').textContent.includes('duty')")
    assert page.locator("#admin-nav").is_hidden()
    page.close()
