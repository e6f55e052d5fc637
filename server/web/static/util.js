"use strict";
// What every part of the duty officer's page shares: server access, the server clock, text
// formatting, a tiny event bus between the parts, and keyed collections that survive the race
// between a list fetched over REST and the events arriving meanwhile over the WebSocket.
(function () {
  const i18n = window.YJ_I18N, t = (key, vars) => i18n.t(key, vars);

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  // The session's CSRF token, from the cookie the server set beside the (HttpOnly) session
  // cookie; every unsafe request echoes it in X-CSRF-Token, which another site cannot.
  function csrfToken() {
    const m = document.cookie.match(/(?:^|;\s*)yj_csrf=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  // A 401 after the browser had a session (it ended: idle, signed out elsewhere, password
  // changed) goes to the sign-in page and back here afterwards. Without one, the page stays
  // and says how to sign in.
  function toSignIn() {
    location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
  }

  async function request(method, url, body) {
    let res, doc = null;
    const opts = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    const csrf = csrfToken();
    if (csrf && method !== "GET" && method !== "HEAD") opts.headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    try {
      res = await fetch(url, opts);
    } catch (e) {
      throw new ApiError(0, String(e.message || e));
    }
    try { doc = await res.json(); } catch (e) { /* not JSON (204, an HTML error page) */ }
    if (res.status === 401 && csrf) toSignIn();
    if (!res.ok) throw new ApiError(res.status, (doc && doc.error) || res.statusText);
    return doc;
  }

  async function signOut() {
    try { await request("DELETE", "/api/v1/session"); } finally { location.assign("/login"); }
  }
  document.addEventListener("click", (ev) => {
    if (ev.target instanceof Element && ev.target.closest("#signout")) signOut();
  });

  // ---- the bus: "event:<topic>" (WebSocket events), "hello" (each (re)connection), "lang",
  // "select" (terminal), "me" (signed-in user known), "redraw" -------------------------------
  const listeners = new Map();
  function on(name, fn) {
    if (!listeners.has(name)) listeners.set(name, []);
    listeners.get(name).push(fn);
  }
  function emit(name, arg) {
    for (const fn of listeners.get(name) || []) {
      try { fn(arg); } catch (e) { console.error(e); }   // one broken part must not stop the rest
    }
  }

  const clock = { offsetMs: 0 };   // server clock minus local clock, from hello/update messages
  const serverNow = () => Date.now() + clock.offsetMs;

  function ago(ms) {
    if (!ms) return t("unknown");
    const s = Math.max(0, Math.round((serverNow() - ms) / 1000));
    if (s < 2) return t("ago.now");
    if (s < 90) return t("ago.s", { n: s });
    if (s < 90 * 60) return t("ago.min", { n: Math.round(s / 60) });
    if (s < 36 * 3600) return t("ago.h", { n: Math.round(s / 3600) });
    return t("ago.d", { n: Math.round(s / 86400) });
  }

  function clockTime(ms) {
    if (!ms) return t("unknown");
    const d = new Date(ms), opts = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
    if (d.toDateString() === new Date().toDateString()) return d.toLocaleTimeString(i18n.locale, opts);
    return d.toLocaleString(i18n.locale, { ...opts, year: "numeric", month: "2-digit", day: "2-digit" });
  }

  const distance = (m) => m >= 1000
    ? t("unit.km", { n: +(m / 1000).toFixed(m >= 10000 ? 0 : 1) })
    : t("unit.m", { n: Math.round(m) });
  const kmh = (mps) => (mps == null ? t("unknown") : t("unit.kmh", { n: (mps * 3.6).toFixed(1) }));
  const eta = (s) => (s < 90 ? t("unit.s", { n: Math.round(s) }) : t("unit.min", { n: +(s / 60).toFixed(1) }));

  // A keyed set of server documents (incidents, alerts, clues, tasks). Events that arrive while
  // the list is being fetched are replayed over it, so a list older than an event never wins.
  // key: the id field's name, or a function of the document.
  function collection(key) {
    const keyOf = typeof key === "function" ? key : (doc) => (doc[key] == null ? null : String(doc[key]));
    const items = new Map();
    let loading = null;   // events seen during a load, or null
    return {
      items,
      upsert(doc) {
        const k = doc && keyOf(doc);
        if (k == null) return;
        if (loading) loading.push(doc);
        items.set(k, doc);
      },
      async load(url, field) {
        loading = [];
        try {
          const body = await request("GET", url);
          items.clear();
          for (const doc of (body && body[field]) || []) if (keyOf(doc) != null) items.set(keyOf(doc), doc);
          for (const doc of loading) items.set(keyOf(doc), doc);
        } finally {
          loading = null;
        }
      },
    };
  }

  // Build an element: h("button", {class: "btn", onclick: fn}, "text", child, ...).
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
    return el;
  }

  window.YJ = {
    t, i18n, ApiError, on, emit, clock, serverNow, ago, clockTime, distance, kmh, eta, collection, h,
    get: (url) => request("GET", url),
    post: (url, body) => request("POST", url, body || {}),
    request, csrfToken, signOut,
    enc: encodeURIComponent,
    me: null,                                        // {name, role} once known
    canDispatch: () => !!YJ.me && (YJ.me.role === "officer" || YJ.me.role === "admin"),
    // Map overlays registered by the parts: each returns a list, drawn by map.js.
    pins: [], tracks: [],
  };
})();
