"use strict";
// The administrator's page: people's accounts (GET/POST /api/v1/accounts, PATCH
// /api/v1/accounts/{name}), registered terminals (GET /api/v1/devices, POST
// /api/v1/devices/{id}/revoke) and volunteers' phones (GET/POST /api/v1/phones, POST
// /api/v1/phones/{id}/revoke). Requests go through util.js (YJ.request), which sends the
// session's X-CSRF-Token with every POST/PATCH. The API enforces the admin role; this page
// only says so when it answers 401 or 403.
//
// A station may have 1,200+ terminals (and as many phones): each table shows one page of rows
// (PAGE) and a "more" button, and filtering works on the array, never on the DOM.
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
    phones: [],             // sorted by phone_id
    phoneFiltered: [],
    phoneShown: PAGE,
    phoneRevoking: null,    // phone_id in its dialog
    // The answer to the last enrolment ({phone, config, qr, qr_svg}) while its panel is open:
    // the code carries the app's password, which the server does not keep. "Done" drops it.
    issued: null,
    volunteers: new Map(),  // volunteer_id -> {name, unit_id, ...}; names only, may stay empty
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
    $("#phones").hidden = !!g || state.me === null;
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
    state.devices = ((doc && doc.devices) || []).slice().sort(byKey("device_id"));
    refilter();
  }

  // The filters of both lists: the words typed (all must appear), and active/revoked/all.
  const wordsOf = (sel) => $(sel).value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  function keeps(doc, words, status, hay) {
    if (status === "active" && doc.revoked_ms != null) return false;
    if (status === "revoked" && doc.revoked_ms == null) return false;
    if (!words.length) return true;
    const text = hay(doc).toLowerCase();
    return words.every((w) => text.includes(w));
  }
  const revokedCount = (list) => list.reduce((n, d) => n + (d.revoked_ms != null ? 1 : 0), 0);
  const byKey = (key) => (a, b) => (a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : 0);

  const deviceText = (d) => d.device_id + " " + (d.label || "") + " " + (d.units || []).join(" ");

  function refilter() {
    const words = wordsOf("#dev-filter"), status = $("#dev-status").value;
    state.filtered = state.devices.filter((d) => keeps(d, words, status, deviceText));
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
    $("#dev-count").textContent = t("ad.count", {
      total: state.devices.length, revoked: revokedCount(state.devices),
      match: state.filtered.length, shown: shown.length,
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
    $("#dev-count").textContent = t("ad.count", {
      total: state.devices.length, revoked: revokedCount(state.devices),
      match: state.filtered.length, shown: Math.min(state.shown, state.filtered.length),
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

  // ---- phones --------------------------------------------------------------------------------
  // A volunteer with only a phone runs OwnTracks or Traccar Client. Enrolling answers with the
  // app's settings and a QR code that carries them, password included: the server keeps only
  // a hash, so the code is shown once, and enrolling again re-issues it (the old one stops
  // working). The code is SVG shown as an <img> data: URL, never as markup in the page.
  const APPS = { owntracks: "ad.appOwntracks", traccar: "ad.appTraccar" };
  const appName = (app) => (APPS[app] ? t(APPS[app]) : String(app));
  const yesNo = (b) => t(b ? "ad.yes" : "ad.no");
  function who(volunteerId) {
    const v = state.volunteers.get(volunteerId);
    return v ? `${v.name} (${volunteerId})` : volunteerId;
  }
  const phoneText = (p) => [p.phone_id, p.volunteer_id, (state.volunteers.get(p.volunteer_id) || {}).name,
    p.unit_id, p.app, appName(p.app)].join(" ");

  async function loadPhones() {
    const doc = await YJ.get("/api/v1/phones");
    state.phones = ((doc && doc.phones) || []).slice().sort(byKey("phone_id"));
    refilterPhones();
  }

  // Names for the table and suggestions for the form. Optional: without them, ids alone.
  async function loadVolunteers() {
    let doc;
    try { doc = await YJ.get("/api/v1/org/volunteers"); } catch (err) { return; }
    state.volunteers = new Map(((doc && doc.volunteers) || []).map((v) => [v.volunteer_id, v]));
    $("#phone-volunteers").replaceChildren(...[...state.volunteers.values()].map((v) =>
      h("option", { value: v.volunteer_id }, `${v.name} · ${v.unit_id}`)));
    renderPhones();
    renderIssued();
  }

  function refilterPhones() {
    const words = wordsOf("#phone-filter"), status = $("#phone-status").value;
    state.phoneFiltered = state.phones.filter((p) => keeps(p, words, status, phoneText));
    state.phoneShown = PAGE;
    renderPhones();
  }

  function phoneRow(p) {
    const revoked = p.revoked_ms != null;
    return h("tr", { class: revoked ? "off" : null, dataset: { phone: p.phone_id } },
      h("td", null, p.phone_id),
      h("td", null, who(p.volunteer_id)),
      h("td", null, p.unit_id || t("unknown")),
      h("td", null, appName(p.app)),
      h("td", { class: "num" }, dateTime(p.created_ms)),
      h("td", null, yesNo(p.encrypted)),
      h("td", null, h("span", { class: "ad-badge", dataset: { state: revoked ? "revoked" : "on" } },
        revoked ? t("ad.revokedAt", { when: dateTime(p.revoked_ms) }) : t("ad.active"))),
      h("td", null, revoked ? "" : h("button", {
        type: "button", class: "btn btn-small btn-danger", dataset: { act: "revoke", phone: p.phone_id },
        "aria-label": t("ad.phoneRevokeAria", { id: p.phone_id }),
      }, t("ad.revoke"))));
  }

  function renderPhoneCount() {
    $("#phone-count").textContent = t("ad.phoneCount", {
      total: state.phones.length, revoked: revokedCount(state.phones),
      match: state.phoneFiltered.length, shown: Math.min(state.phoneShown, state.phoneFiltered.length),
    });
  }

  function renderPhones() {
    const shown = state.phoneFiltered.slice(0, state.phoneShown);
    const frag = document.createDocumentFragment();
    for (const p of shown) frag.append(phoneRow(p));
    $("#phone-rows").replaceChildren(frag);
    renderPhoneCount();
    const empty = $("#phone-empty");
    empty.hidden = shown.length > 0;
    empty.textContent = state.phones.length ? t("ad.noPhoneMatch") : t("ad.noPhones");
    const left = state.phoneFiltered.length - shown.length, more = $("#phone-more");
    more.hidden = left <= 0;
    more.textContent = t("ad.phoneMore", { n: Math.min(PAGE, left), left });
    renderReissueNote();
  }

  function replacePhone(doc) {
    for (const list of [state.phones, state.phoneFiltered]) {
      const i = list.findIndex((p) => p.phone_id === doc.phone_id);
      if (i >= 0) list[i] = doc;
    }
    const row = $("#phone-rows").querySelector(`tr[data-phone="${CSS.escape(doc.phone_id)}"]`);
    if (row) row.replaceWith(phoneRow(doc));
    renderPhoneCount();
    renderReissueNote();
  }

  // Traccar Client cannot encrypt: the box is for OwnTracks only (and on by default there).
  function syncEncrypt() {
    const box = $("#phone-encrypt"), on = $("#phone-app").value === "owntracks";
    if (on && box.disabled) box.checked = true;
    box.disabled = !on;
    if (!on) box.checked = false;
  }

  // Enrolling a volunteer who already has a phone re-issues its code (and lifts a
  // revocation): say so before.
  function renderReissueNote() {
    const id = trimmed("#phone-volunteer");
    const mine = id ? state.phones.filter((p) => p.volunteer_id === id) : [];
    const phone = mine.find((p) => p.revoked_ms == null) || mine[0];
    $("#phone-reissue").textContent = !phone ? ""
      : t(phone.revoked_ms == null ? "ad.reissueNote" : "ad.reenrolNote", { who: who(id), id: phone.phone_id });
  }

  async function enrol(ev) {
    ev.preventDefault();
    say("phone-ok", null);
    const volunteerId = trimmed("#phone-volunteer"), app = $("#phone-app").value;
    if (!volunteerId) { say("phone-form-error", "ad.phoneMissing"); $("#phone-volunteer").focus(); return; }
    const body = { volunteer_id: volunteerId, app, encrypt: app === "owntracks" && $("#phone-encrypt").checked };
    const button = $("#phone-enrol");
    button.disabled = true;
    button.textContent = t("ad.enrolling");
    try {
      const doc = await YJ.post("/api/v1/phones", body);
      say("phone-form-error", null);
      state.issued = doc;
      renderIssued();
      $("#phone-issued").focus();
      $("#phone-volunteer").value = "";   // the app and the box stay, for the next phone
      // A re-issue may lift a revocation: the list again (or at least this row), paged on to it.
      try { await loadPhones(); } catch (err) { upsertPhone(doc.phone); }
      revealPhone(doc.phone.phone_id);
    } catch (err) {
      sayFailure("phone-form-error", "ad.enrolFailed", err);
    } finally {
      button.disabled = false;
      button.textContent = t("ad.enrol");
    }
  }

  function upsertPhone(doc) {
    state.phones = state.phones.filter((p) => p.phone_id !== doc.phone_id).concat([doc]).sort(byKey("phone_id"));
    refilterPhones();
  }

  // Page on to a phone's row (the one just enrolled), if the filters keep it.
  function revealPhone(id) {
    const i = state.phoneFiltered.findIndex((p) => p.phone_id === id);
    if (i < state.phoneShown) return;
    state.phoneShown = (Math.floor(i / PAGE) + 1) * PAGE;
    renderPhones();
  }

  // An SVG document as a data: URL (base64 of its UTF-8), for an <img>: it cannot run script.
  // An image is a document of its own: drawn only in the SVG namespace (which markup inlined
  // in HTML may leave out) and scaled to the <img> only with a viewBox, so both are added to
  // the root tag when missing. Nothing else of the text is looked at.
  function svgData(svg) {
    let text = String(svg || "");
    const open = text.match(/<svg\b[^>]*>/);
    if (open) {
      let tag = open[0];
      if (!/\sxmlns=/.test(tag)) tag = tag.replace(/^<svg/, '<svg xmlns="http://www.w3.org/2000/svg"');
      const w = tag.match(/\swidth="([\d.]+)"/), ht = tag.match(/\sheight="([\d.]+)"/);
      if (!/\sviewBox=/.test(tag) && w && ht) tag = tag.replace(/^<svg/, `<svg viewBox="0 0 ${w[1]} ${ht[1]}"`);
      text = text.slice(0, open.index) + tag + text.slice(open.index + open[0].length);
    }
    const bytes = new TextEncoder().encode(text);
    let bin = "";
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return "data:image/svg+xml;base64," + btoa(bin);
  }

  // The app's settings in words, for whoever types them in: [label key, value] pairs, the
  // secrets (password, key, the code's own text) apart, folded away.
  function settingsOf(doc) {
    const c = doc.config || {}, p = doc.phone;
    const pair = (key, value) => (value == null || value === "" ? null : [key, String(value)]);
    let plain, secret;
    if (p.app === "traccar") {
      plain = [pair("ad.setServerUrl", c.server_url), pair("ad.setDeviceId", c.device_id)];
      secret = [];
    } else {
      // OwnTracks' .otrc: mode 3 is HTTP (a URL), 0 MQTT (host, port, TLS).
      const http = c.mode === 3 || (c.mode == null && !!c.url);
      plain = [pair("ad.setMode", t(http ? "ad.modeHttp" : "ad.modeMqtt")),
        ...(http ? [pair("ad.setUrl", c.url)]
          : [pair("ad.setHost", c.host), pair("ad.setPort", c.port), pair("ad.setTls", c.tls == null ? null : yesNo(c.tls))]),
        pair("ad.setUser", c.username), pair("ad.setDevice", c.deviceId), pair("ad.setTid", c.tid),
        pair("ad.setEncrypted", yesNo(p.encrypted))];
      secret = [pair("ad.setPassword", c.password), pair("ad.setKey", c.encryptionKey)];
    }
    secret.push(pair("ad.setQr", doc.qr));
    return { plain: plain.filter(Boolean), secret: secret.filter(Boolean) };
  }

  const terms = (pairs) => pairs.flatMap(([key, value]) => [h("dt", null, t(key)), h("dd", null, value)]);

  function renderIssued() {
    const doc = state.issued, img = $("#phone-qr");
    $("#phone-issued").hidden = !doc;
    if (!doc) {
      img.removeAttribute("src");
      $("#phone-settings").replaceChildren();
      $("#phone-secret-list").replaceChildren();
      return;
    }
    const p = doc.phone, app = appName(p.app);
    $("#phone-issued-h").textContent = t("ad.issuedTitle", { id: p.phone_id, who: who(p.volunteer_id), app });
    const src = svgData(doc.qr_svg);
    if (img.getAttribute("src") !== src) img.src = src;
    img.alt = t("ad.qrAlt", { app });
    $("#phone-how").textContent = t(p.app === "traccar" ? "ad.howTraccar" : "ad.howOwntracks");
    const { plain, secret } = settingsOf(doc);
    $("#phone-settings").replaceChildren(...terms(plain));
    $("#phone-secret-list").replaceChildren(...terms(secret));
  }

  function closeIssued() {
    state.issued = null;
    $("#phone-secrets").open = false;
    renderIssued();
  }

  function openPhoneRevoke(id) {
    state.phoneRevoking = id;
    say("phone-revoke-error", null);
    say("phone-ok", null);
    renderPhoneRevokeTitle();
    $("#phone-revoke-dialog").showModal();
    $("#phone-revoke-cancel").focus();   // the safe choice first
  }

  function renderPhoneRevokeTitle() {
    if (state.phoneRevoking) $("#phone-revoke-title").textContent = t("ad.phoneRevokeTitle", { id: state.phoneRevoking });
  }

  function closePhoneRevoke() {
    state.phoneRevoking = null;
    if ($("#phone-revoke-dialog").open) $("#phone-revoke-dialog").close();
  }

  async function confirmPhoneRevoke(ev) {
    ev.preventDefault();
    const id = state.phoneRevoking;
    if (!id) return;
    const button = $("#phone-revoke-confirm");
    button.disabled = true;
    button.textContent = t("ad.revoking");
    try {
      const doc = await YJ.post("/api/v1/phones/" + enc(id) + "/revoke", {});
      replacePhone(doc);
      if (state.issued && state.issued.phone.phone_id === id) closeIssued();   // that code is dead
      closePhoneRevoke();
      say("phone-error", null);
      say("phone-ok", "ad.phoneRevoked", { id });
    } catch (err) {
      sayFailure("phone-revoke-error", "ad.revokeFailed", err);
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
    renderPhones();
    renderIssued();
    renderPhoneRevokeTitle();
    for (const id of Object.keys(state.msgs)) renderMsg(id);
  }

  function wire() {
    syncEncrypt();
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

    $("#phone-form").addEventListener("submit", enrol);
    $("#phone-app").addEventListener("change", syncEncrypt);
    $("#phone-volunteer").addEventListener("input", renderReissueNote);
    $("#phone-issued-done").addEventListener("click", () => { closeIssued(); $("#phone-volunteer").focus(); });
    let pendingPhones = 0;
    $("#phone-filter").addEventListener("input", () => {
      clearTimeout(pendingPhones);
      pendingPhones = setTimeout(refilterPhones, 120);
    });
    $("#phone-status").addEventListener("change", refilterPhones);
    $("#phone-more").addEventListener("click", () => { state.phoneShown += PAGE; renderPhones(); });
    $("#phone-rows").addEventListener("click", (ev) => {
      const b = ev.target instanceof Element && ev.target.closest("button[data-act='revoke']");
      if (b) openPhoneRevoke(b.dataset.phone);
    });
    $("#phone-revoke-form").addEventListener("submit", confirmPhoneRevoke);
    $("#phone-revoke-cancel").addEventListener("click", closePhoneRevoke);
    $("#phone-revoke-dialog").addEventListener("close", () => { state.phoneRevoking = null; });
  }

  async function start() {
    wire();
    renderAll();
    try {
      state.me = await YJ.get("/api/v1/me");
      renderMe();
      // The lists at once; a 403 from any is the answer for the whole page.
      const lists = [[loadAccounts, "accounts-error"], [loadDevices, "dev-error"], [loadPhones, "phone-error"]];
      const results = await Promise.allSettled(lists.map(([load]) => load()));
      const refused = results.find((r) => r.status === "rejected" && gate(r.reason));
      if (!refused) {
        results.forEach((r, i) => {
          if (r.status === "rejected") sayFailure(lists[i][1], "ad.listFailed", r.reason);
        });
        loadVolunteers();   // names only: not awaited, and its failure is silent
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
