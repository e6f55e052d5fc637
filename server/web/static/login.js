"use strict";
// The sign-in form: POST /api/v1/session as JSON; the server sets the session cookies, then
// the browser goes to ?next= (a path on this server only) or the live map.
(function () {
  const i18n = window.YJ_I18N, t = (k, v) => i18n.t(k, v);
  const $ = (s) => document.querySelector(s);

  function render() {
    i18n.apply(document);
    document.title = t("login.title");
  }

  function target() {
    const next = new URLSearchParams(location.search).get("next") || "/";
    // Never another site: "//host", "/\host", "https://…".
    return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/";
  }

  async function submit(ev) {
    ev.preventDefault();
    const username = $("#username").value.trim(), password = $("#password").value;
    const error = $("#error");
    if (!username || !password) { error.textContent = t("login.missing"); return; }
    const button = $("#submit");
    button.disabled = true;
    button.textContent = t("login.busy");
    error.textContent = "";
    try {
      const res = await fetch("/api/v1/session", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ username, password }),
      });
      if (res.ok) { location.assign(target()); return; }
      if (res.status === 429) error.textContent = t("login.throttled", { s: res.headers.get("Retry-After") || "60" });
      else if (res.status === 401) error.textContent = t("login.failed");
      else {
        let doc = null;
        try { doc = await res.json(); } catch (e) { /* not JSON */ }
        error.textContent = (doc && doc.error) || `${res.status} ${res.statusText}`;
      }
      $("#password").value = "";
      $("#password").focus();
    } catch (e) {
      error.textContent = t("login.network", { msg: String(e.message || e) });
    } finally {
      button.disabled = false;
      button.textContent = t("login.submit");
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    render();
    $("#signin").addEventListener("submit", submit);
    $("#lang").addEventListener("click", () => { i18n.set(i18n.lang === "zh" ? "en" : "zh"); render(); });
  });
})();
