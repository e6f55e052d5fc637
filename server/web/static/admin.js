"use strict";
// The administrator's page: people's accounts (GET/POST /api/v1/accounts, PATCH
// /api/v1/accounts/{name}) and registered terminals (GET /api/v1/devices, POST
// /api/v1/devices/{id}/revoke). Requests go through util.js (YJ.request), which sends the
// session's X-CSRF-Token with every POST/PATCH. The API enforces the admin role; this page
// only says so when it answers 401 or 403.
//
// A station may have 1,200+ terminals: the table shows one page of rows (PAGE) and a "more"
// button, and filtering works on the array, never on the DOM.
(function () {
  const { t, i18n, h, enc } = window.YJ;
  const $ = (s) => document.querySelector(s);
  const PAGE = 100;
  const ROLES = ["officer", "inspector", "admin", "volunteer"];

  const state = {
    me: null,               // /api/v1/me
    gate: null,             // null | {kind: "signin" | "denied" | "error", msg}
    accounts: [],
    editing: null,          // username being edited
    devices: [],            // sorted by device_id
    filtered: [],
    shown: PAGE,
    revoking: null,         // device_id in the dialog
    // Messages kept as {key, vars} so that a language switch re-renders them.
    msgs: {},
  };

  // ---- messages beside their forms ---------------------------------------------------------
  function say(id, key, vars) {
    state.msgs[id] = key ? { key, vars } : null;
    renderMsg(id);
  }
  function renderMsg(id) {
    const el = document.getElementById(id), m = state.msgs[id];
    if (el) el.textContent = m ? t(m.key, m.vars) : "";
  }
  function failure(key, err) {
    // The server's own sentence (it names the field), framed in the page's language.
    if (err && err.status === 0) return { key: "ad.network", vars: { msg: err.message } };
    return { key, vars: { msg: (err && err.message) || String(err) } };
  }
  function sayFailure(id, key, err) {
    const f = failure(key, err);
    say(id, f.key, f.vars);
  }

  const blank = (v) => (v == null || v === "" ? null : v);
  const trimmed = (sel) => $(sel).value.trim();
  const dateTime = (ms) => (ms ? new Date(ms).toLocaleString(i18n.locale, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false,
  }) : t("unknown"));
  const isMe = (name) => !!state.me && typeof state.me.account === "string"
    && state.me.account.toLowerCase() === String(name).toLowerCase();

  // ---- the gate: not signed in, or not an admin ----------------------------------------------
  function gate(err) {
    if (err && err.status === 401) state.gate = { kind: "signin", msg: err.message };
    else if (err && err.status === 403) state.gate = { kind: "denied", msg: err.message };
    else return false;
    renderGate();
    return true;
  }

  function renderGate() {
    const g = state.gate;
    $("#gate").hidden = !g;
    $("#accounts").hidden = !!g || state.me === null;
    $("#terminals").hidden = !!g || state.me === null;
    if (!g) return;
    const signin = g.kind === "signin";
    $("#gate-login").hidden = !signin;
    if (g.kind === "error") {   // the server unreachable or failing: {key, vars} from failure()
      $("#gate-title").textContent = t("ad.errorTitle");
      $("#gate-text").textContent = t(g.msg.key, g.msg.vars);
      $("#gate-detail").textContent = "";
      return;
    }
    $("#gate-title").textContent = t(signin ? "ad.signinTitle" : "ad.deniedTitle");
    const who = state.me ? state.me.name : t("unknown");
    const role = state.me ? t("role." + state.me.role) : t("unknown");
    $("#gate-text").textContent = signin ? t("ad.signin") : t("ad.denied", { who, role });
    $("#gate-detail").textContent = g.msg ? t("ad.server", { msg: g.msg }) : "";
  }

  function renderMe() {
    const el = $("#me");
    el.hidden = !state.me;
    if (state.me) el.textContent = `${state.me.name} · ${t("role." + state.me.role)}`;
    $("#signout").hidden = !state.me;
  }

  // ---- accounts ------------------------------------------------------------------------------
  function fillRoles() {
    for (const sel of document.querySelectorAll(".role-select")) {
      const keep = sel.value || "officer";
      sel.replaceChildren(...ROLES.map((r) => h("option", { value: r }, t("role." + r))));
      sel.value = keep;
    }
  }

  // Only a volunteer's account names a volunteer: the field is off for every other role.
  function syncVolunteerField(roleSel, input) {
    const on = $(roleSel).value === "volunteer";
    $(input).disabled = !on;
    if (!on) $(input).value = "";
  }

  function renderAccounts() {
    const rows = state.accounts.map((a) => {
      const mine = isMe(a.username);
      return h("tr", { class: a.disabled ? "off" : null, dataset: { user: a.username } },
        h("td", null, a.username, mine ? t("ad.you") : null),
        h("td", null, a.display_name || ""),
        h("td", null, t("role." + a.role)),
        h("td", null, a.scope || t("ad.allUnits")),
        h("td", null, a.volunteer_id || t("unknown")),
        h("td", null, h("span", { class: "ad-badge", dataset: { state: a.disabled ? "off" : "on" } },
          t(a.disabled ? "ad.disabled" : "ad.enabled"))),
        h("td", null, h("div", { class: "row-btns" },
          h("button", {
            type: "button", class: "btn btn-small", dataset: { act: "edit", user: a.username },
            "aria-label": t("ad.editAria", { name: a.username }),
          }, t("ad.edit")),
          h("button", {
            type: "button", class: a.disabled ? "btn btn-small" : "btn btn-small btn-danger",
            dataset: { act: a.disabled ? "enable" : "disable", user: a.username },
            "aria-label": t(a.disabled ? "ad.enableAria" : "ad.disableAria", { name: a.username }),
            disabled: mine && !a.disabled,   // the server refuses an admin disabling themself
          }, t(a.disabled ? "ad.enable" : "ad.disable")))));
    });
    if (!rows.length) rows.push(h("tr", null, h("td", { colspan: "7", class: "muted" }, t("ad.noAccounts"))));
    $("#account-rows").replaceChildren(...rows);
    renderEdit();
  }

  async function loadAccounts() {
    const doc = await YJ.get("/api/v1/accounts");
    state.accounts = ((doc && doc.accounts) || []).slice()
      .sort((a, b) => a.username.localeCompare(b.username));
    renderAccounts();
  }

  function upsertAccount(account) {
    const i = state.accounts.findIndex((a) => a.username === account.username);
    if (i >= 0) state.accounts[i] = account;
    else {
      state.accounts.push(account);
      state.accounts.sort((a, b) => a.username.localeCompare(b.username));
    }
    renderAccounts();
  }

  async function create(ev) {
    ev.preventDefault();
    say("create-ok", null);
    const username = trimmed("#new-username"), password = $("#new-password").value;
    const role = $("#new-role").value;
    if (!username || !password || !role) { say("create-error", "ad.missing"); return; }
    const body = { username, password, role };
    const display = trimmed("#new-display"), scope = trimmed("#new-scope");
    const volunteer = trimmed("#new-volunteer");
    if (display) body.display_name = display;
    if (scope) body.scope = scope;
    if (role === "volunteer" && volunteer) body.volunteer_id = volunteer;
    const button = $("#create");
    button.disabled = true;
    button.textContent = t("ad.creating");
    try {
      const account = await YJ.post("/api/v1/accounts", body);
      say("create-error", null);
      say("create-ok", "ad.created", { name: account.username });
      $("#create-form").reset();
      fillRoles();
      syncVolunteerField("#new-role", "#new-volunteer");
      upsertAccount(account);
    } catch (err) {
      sayFailure("create-error", "ad.createFailed", err);
      $("#new-password").value = "";
    } finally {
      button.disabled = false;
      button.textContent = t("ad.create");
    }
  }

  async function change(name, body, errorId) {
    const account = await YJ.request("PATCH", "/api/v1/accounts/" + enc(name), body);
    upsertAccount(account);
    say(errorId, null);
    say("accounts-ok", "ad.changed", { name: account.username });
    return account;
  }

  async function toggle(name, disabled, button) {
    say("accounts-ok", null);
    button.disabled = true;
    try {
      await change(name, { disabled }, "accounts-error");
    } catch (err) {
      sayFailure("accounts-error", "ad.changeFailed", err);
      button.disabled = false;
    }
  }

  function startEdit(name) {
    const a = state.accounts.find((x) => x.username === name);
    if (!a) return;
    state.editing = name;
    say("edit-error", null);
    $("#edit-display").value = a.display_name || "";
    $("#edit-role").value = a.role;
    $("#edit-scope").value = a.scope || "";
    $("#edit-volunteer").value = a.volunteer_id || "";
    $("#edit-password").value = "";
    syncVolunteerField("#edit-role", "#edit-volunteer");
    renderEdit();
    $("#edit-display").focus();
  }

  function renderEdit() {
    const form = $("#edit-form");
    const a = state.editing && state.accounts.find((x) => x.username === state.editing);
    form.hidden = !a;
    if (a) $("#edit-title").textContent = t("ad.editTitle", { name: a.username });
  }

  function stopEdit() {
    state.editing = null;
    say("edit-error", null);
    renderEdit();
  }

  async function saveEdit(ev) {
    ev.preventDefault();
    const a = state.accounts.find((x) => x.username === state.editing);
    if (!a) return;
    const body = {};
    const display = trimmed("#edit-display"), role = $("#edit-role").value;
    const scope = blank(trimmed("#edit-scope")), volunteer = blank(trimmed("#edit-volunteer"));
    const password = $("#edit-password").value;
    if (display && display !== a.display_name) body.display_name = display;
    if (role !== a.role) body.role = role;
    if (scope !== (a.scope || null)) body.scope = scope;
    if (role === "volunteer" && volunteer !== (a.volunteer_id || null)) body.volunteer_id = volunteer;
    if (password) body.password = password;
    if (!Object.keys(body).length) { say("edit-error", "ad.nothing"); return; }
    const button = $("#edit-save");
    button.disabled = true;
    button.textContent = t("ad.saving");
    try {
      await change(a.username, body, "edit-error");
      stopEdit();
    } catch (err) {
      sayFailure("edit-error", "ad.changeFailed", err);
    } finally {
      $("#edit-password").value = "";
      button.disabled = false;
      button.textContent = t("ad.save");
    }
  }

  // ---- terminals -----------------------------------------------------------------------------
  async function loadDevices() {
    const doc = await YJ.get("/api/v1/devices");
    state.devices = ((doc && doc.devices) || []).slice()
      .sort((a, b) => (a.device_id < b.device_id ? -1 : a.device_id > b.device_id ? 1 : 0));
    refilter();
  }

  function matches(d, words, status) {
    if (status === "active" && d.revoked_ms != null) return false;
    if (status === "revoked" && d.revoked_ms == null) return false;
    if (!words.length) return true;
    const hay = (d.device_id + " " + (d.label || "") + " " + (d.units || []).join(" ")).toLowerCase();
    return words.every((w) => hay.includes(w));
  }

  function refilter() {
    const words = $("#dev-filter").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const status = $("#dev-status").value;
    state.filtered = state.devices.filter((d) => matches(d, words, status));
    state.shown = PAGE;
    renderDevices();
  }

  function deviceRow(d) {
    const revoked = d.revoked_ms != null;
    return h("tr", { class: revoked ? "off" : null, dataset: { device: d.device_id } },
      h("td", null, d.device_id),
      h("td", null, d.label || ""),
      h("td", null, (d.units || []).join(", ") || t("unknown")),
      h("td", { class: "num" }, dateTime(d.created_ms)),
      h("td", { class: "num" }, (d.key_ids || []).join(", ") || t("unknown")),
      h("td", null, h("span", { class: "ad-badge", dataset: { state: revoked ? "revoked" : "on" } },
        revoked ? t("ad.revokedAt", { when: dateTime(d.revoked_ms) }) : t("ad.active"))),
      h("td", null, revoked ? "" : h("button", {
        type: "button", class: "btn btn-small btn-danger", dataset: { act: "revoke", device: d.device_id },
        "aria-label": t("ad.revokeAria", { id: d.device_id }),
      }, t("ad.revoke"))));
  }

  function renderDevices() {
    const shown = state.filtered.slice(0, state.shown);
    const frag = document.createDocumentFragment();
    for (const d of shown) frag.append(deviceRow(d));
    $("#device-rows").replaceChildren(frag);
    const revoked = state.devices.reduce((n, d) => n + (d.revoked_ms != null ? 1 : 0), 0);
    $("#dev-count").textContent = t("ad.count", {
      total: state.devices.length, revoked, match: state.filtered.length, shown: shown.length,
    });
    const empty = $("#dev-empty");
    empty.hidden = shown.length > 0;
    empty.textContent = state.devices.length ? t("ad.noMatch") : t("ad.noDevices");
    const left = state.filtered.length - shown.length, more = $("#dev-more");
    more.hidden = left <= 0;
    more.textContent = t("ad.more", { n: Math.min(PAGE, left), left });
  }

  function replaceDevice(doc) {
    const i = state.devices.findIndex((d) => d.device_id === doc.device_id);
    if (i >= 0) state.devices[i] = doc;
    const j = state.filtered.findIndex((d) => d.device_id === doc.device_id);
    if (j >= 0) state.filtered[j] = doc;
    // Only the one row changes: no full re-render for a 1,200-row list.
    const row = $("#device-rows").querySelector(`tr[data-device="${CSS.escape(doc.device_id)}"]`);
    if (row) row.replaceWith(deviceRow(doc));
    const revoked = state.devices.reduce((n, d) => n + (d.revoked_ms != null ? 1 : 0), 0);
    $("#dev-count").textContent = t("ad.count", {
      total: state.devices.length, revoked, match: state.filtered.length,
      shown: Math.min(state.shown, state.filtered.length),
    });
  }

  function openRevoke(id) {
    state.revoking = id;
    say("revoke-error", null);
    say("dev-ok", null);
    $("#revoke-reason").value = "";
    renderRevokeTitle();
    $("#revoke-dialog").showModal();
    $("#revoke-reason").focus();
  }

  function renderRevokeTitle() {
    if (state.revoking) $("#revoke-title").textContent = t("ad.revokeTitle", { id: state.revoking });
  }

  function closeRevoke() {
    state.revoking = null;
    if ($("#revoke-dialog").open) $("#revoke-dialog").close();
  }

  async function confirmRevoke(ev) {
    ev.preventDefault();
    const id = state.revoking;
    if (!id) return;
    const reason = $("#revoke-reason").value.trim();
    if (!reason) { say("revoke-error", "ad.reasonMissing"); $("#revoke-reason").focus(); return; }
    const button = $("#revoke-confirm");
    button.disabled = true;
    button.textContent = t("ad.revoking");
    try {
      const doc = await YJ.post("/api/v1/devices/" + enc(id) + "/revoke", { reason });
      replaceDevice(doc);
      closeRevoke();
      say("dev-error", null);
      say("dev-ok", "ad.revoked", { id });
    } catch (err) {
      sayFailure("revoke-error", "ad.revokeFailed", err);
    } finally {
      button.disabled = false;
      button.textContent = t("ad.revokeConfirm");
    }
  }

  // ---- the whole page ------------------------------------------------------------------------
  function renderAll() {
    i18n.apply(document);
    document.title = t("ad.title");
    fillRoles();
    renderMe();
    renderGate();
    renderAccounts();
    renderDevices();
    renderRevokeTitle();
    for (const id of Object.keys(state.msgs)) renderMsg(id);
  }

  function wire() {
    $("#lang").addEventListener("click", () => { i18n.set(i18n.lang === "zh" ? "en" : "zh"); renderAll(); });
    $("#create-form").addEventListener("submit", create);
    $("#new-role").addEventListener("change", () => syncVolunteerField("#new-role", "#new-volunteer"));
    $("#edit-role").addEventListener("change", () => syncVolunteerField("#edit-role", "#edit-volunteer"));
    $("#edit-form").addEventListener("submit", saveEdit);
    $("#edit-cancel").addEventListener("click", stopEdit);
    $("#account-rows").addEventListener("click", (ev) => {
      const b = ev.target instanceof Element && ev.target.closest("button[data-act]");
      if (!b) return;
      if (b.dataset.act === "edit") startEdit(b.dataset.user);
      else toggle(b.dataset.user, b.dataset.act === "disable", b);
    });
    let pending = 0;
    $("#dev-filter").addEventListener("input", () => {
      clearTimeout(pending);
      pending = setTimeout(refilter, 120);   // typing into 1,200 rows: filter once per pause
    });
    $("#dev-status").addEventListener("change", refilter);
    $("#dev-more").addEventListener("click", () => { state.shown += PAGE; renderDevices(); });
    $("#device-rows").addEventListener("click", (ev) => {
      const b = ev.target instanceof Element && ev.target.closest("button[data-act='revoke']");
      if (b) openRevoke(b.dataset.device);
    });
    $("#revoke-form").addEventListener("submit", confirmRevoke);
    $("#revoke-cancel").addEventListener("click", closeRevoke);
    $("#revoke-dialog").addEventListener("close", () => { state.revoking = null; });
  }

  async function start() {
    wire();
    renderAll();
    try {
      state.me = await YJ.get("/api/v1/me");
      renderMe();
      // Both lists at once; a 403 from either is the answer for the whole page.
      const results = await Promise.allSettled([loadAccounts(), loadDevices()]);
      const refused = results.find((r) => r.status === "rejected" && gate(r.reason));
      if (!refused) {
        if (results[0].status === "rejected") sayFailure("accounts-error", "ad.listFailed", results[0].reason);
        if (results[1].status === "rejected") sayFailure("dev-error", "ad.listFailed", results[1].reason);
      }
    } catch (err) {
      if (!gate(err)) state.gate = { kind: "error", msg: failure("ad.server", err) };
    } finally {
      $("#loading").hidden = true;
      renderGate();
    }
  }

  document.addEventListener("DOMContentLoaded", start);
})();
