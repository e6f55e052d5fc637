"use strict";
// The duty officer's live map: a REST snapshot, then a WebSocket of changes; counts, a filterable
// list, details and the recent track of the selected terminal. Strings come from i18n.js, the
// canvas map from map.js.
(function () {
  const i18n = window.YJ_I18N, t = (key, vars) => i18n.t(key, vars);
  const STALE_MS = 2 * 60 * 1000, MOVING_MPS = 0.5;
  const TRACK_MS = 30 * 60 * 1000, TRACK_REFRESH_MS = 3000, TRACK_LIMIT = 5000;
  const COLORS = { moving: "#15803d", still: "#2563eb", stale: "#c2410c", offline: "#6b7280", nofix: "#9ca3af" };
  const TRACK_COLOR = "#7c3aed";
  const $ = (sel) => document.querySelector(sel);

  const state = {
    terminals: new Map(),   // device -> latest T from the server
    status: new Map(),      // device -> status as last shown
    offsetMs: 0,            // server clock minus local clock
    selected: null,
    track: null,            // {device, points, keys, loading, error, busy, again, last, timer}
    textFilter: "",
    statusFilter: "",
    fitted: false,
    me: null,
    notice: null,           // {key, detail, blocking}
  };
  const rows = new Map();   // device -> <li>
  window.yijing = { terminals: state.terminals, positionsDrawn: 0 };

  // ---- time, status and formatting --------------------------------------------------------
  const serverNow = () => Date.now() + state.offsetMs;

  function statusOf(term) {
    if (!term.online) return "offline";
    if (serverNow() - term.last_seen_ms > STALE_MS) return "stale";
    if (!term.fix) return "nofix";
    return (term.fix.speed_mps ?? 0) > MOVING_MPS ? "moving" : "still";
  }

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
    const d = new Date(ms), opts = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
    if (d.toDateString() === new Date().toDateString()) return d.toLocaleTimeString(i18n.locale, opts);
    return d.toLocaleString(i18n.locale, { ...opts, year: "numeric", month: "2-digit", day: "2-digit" });
  }

  const distance = (m) => m >= 1000
    ? t("unit.km", { n: +(m / 1000).toFixed(m >= 10000 ? 0 : 1) })
    : t("unit.m", { n: Math.round(m) });
  const kmh = (mps) => (mps == null ? t("unknown") : t("unit.kmh", { n: (mps * 3.6).toFixed(1) }));

  function pathLength(points) {
    let m = 0;
    for (let i = 1; i < points.length; i++) {
      const a = points[i - 1], b = points[i], k = Math.cos(((a.lat + b.lat) / 2) * Math.PI / 180);
      m += Math.hypot((b.lat - a.lat) * 111320, (b.lon - a.lon) * 111320 * k);
    }
    return m;
  }

  // ---- server access ----------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function getJSON(url) {
    let res, body = null;
    try {
      res = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    } catch (e) {
      throw new ApiError(0, String(e.message || e));
    }
    try { body = await res.json(); } catch (e) { /* not JSON */ }
    if (!res.ok) throw new ApiError(res.status, (body && body.error) || res.statusText);
    return body;
  }

  const isAuthError = (err) => err.status === 401 || err.status === 403;

  function noticeFor(err) {
    if (err.status === 401) return { key: "err.signin", detail: err.message, blocking: true };
    if (err.status === 403) return { key: "err.forbidden", detail: err.message, blocking: true };
    if (err.status === 0) return { key: "err.network" };
    return { key: "err.server", msg: err.message };
  }

  function showNotice(notice) { state.notice = notice; renderNotice(); }

  function renderNotice() {
    const el = $("#notice"), n = state.notice;
    el.hidden = !n;
    if (!n) return;
    const role = state.me ? t("role." + state.me.role) : t("unknown");
    el.classList.toggle("blocking", !!n.blocking);
    el.querySelector(".notice-text").textContent = t(n.key, { role, msg: n.msg || "" });
    el.querySelector(".notice-detail").textContent = n.detail || "";
    el.querySelector(".notice-reload").hidden = !n.blocking;
  }

  // ---- live connection: WebSocket with capped, jittered exponential backoff ----------------
  const conn = { ws: null, attempt: 0, timer: null, retryAt: 0, state: "connecting" };

  function setConn(s) { conn.state = s; renderConn(); }

  function renderConn() {
    const el = $("#conn");
    el.dataset.state = conn.state;
    const text = conn.state === "closed" && conn.timer
      ? t("conn.retry", { s: Math.max(1, Math.ceil((conn.retryAt - Date.now()) / 1000)) })
      : t("conn." + conn.state);
    el.querySelector(".conn-text").textContent = text;
  }

  function connect() {
    conn.timer = null;
    setConn("connecting");
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/live`);
    let greeted = false;
    conn.ws = ws;
    ws.onopen = () => setConn("open");
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.type === "hello") {
        greeted = true;
        conn.attempt = 0;
        if (state.notice && !state.notice.blocking) showNotice(null);
        apply(msg.terminals || [], msg.server_time_ms, true);
      } else if (msg.type === "update") {
        apply(msg.terminals || [], msg.server_time_ms, false);
      }
    };
    ws.onclose = () => {
      if (conn.ws !== ws) return;
      conn.ws = null;
      reconnect(greeted);
    };
  }

  async function reconnect(greeted) {
    setConn("closed");
    if (!greeted) {
      // Refused before the hello: find out why (signed out? server down?) and refresh the data.
      try {
        const snap = await getJSON("/api/v1/terminals");
        apply(snap.terminals || [], snap.server_time_ms, true);
      } catch (err) {
        showNotice(noticeFor(err));
        if (isAuthError(err)) return;   // retrying cannot help; the notice says what to do
      }
    }
    const cap = Math.min(30000, 1000 * 2 ** conn.attempt++);
    const delay = cap / 2 + Math.random() * (cap / 2);
    conn.retryAt = Date.now() + delay;
    conn.timer = setTimeout(connect, delay);
    renderConn();
  }

  // ---- data -------------------------------------------------------------------------------
  function apply(list, serverTimeMs, full) {
    if (Number.isFinite(serverTimeMs)) state.offsetMs = serverTimeMs - Date.now();
    if (full) {
      const present = new Set(list.map((x) => x && x.device));
      for (const id of [...state.terminals.keys()]) {
        if (present.has(id)) continue;
        state.terminals.delete(id); state.status.delete(id);
        rows.get(id)?.remove(); rows.delete(id);
        if (id === state.selected) select(null);
      }
    }
    let added = false;
    for (const term of list) {
      if (!term || typeof term.device !== "string") continue;
      if (!term.fix) term.fix = null;
      added = added || !state.terminals.has(term.device);
      state.terminals.set(term.device, term);
      updateRow(term);
      if (term.device === state.selected) scheduleTrack();
    }
    if (added) sortRows();
    refresh(true);
    if (!state.fitted && markers().length) { state.fitted = true; map.fit(); }
  }

  // ---- list and counts --------------------------------------------------------------------
  const ROW_HTML = '<button type="button" class="row"><span class="dot" aria-hidden="true"></span>' +
    '<span class="dev"></span><span class="st"></span><span class="meta"></span><span class="bat"></span></button>';

  function matches(term, st) {
    if (state.textFilter && !term.device.toLowerCase().includes(state.textFilter)) return false;
    if (state.statusFilter === "online") return term.online;
    return !state.statusFilter || st === state.statusFilter;
  }

  function updateRow(term) {
    let li = rows.get(term.device);
    if (!li) {
      li = document.createElement("li");
      li.dataset.device = term.device;
      li.innerHTML = ROW_HTML;
      li.querySelector(".dev").textContent = term.device;
      rows.set(term.device, li);
    }
    const st = statusOf(term), sel = term.device === state.selected;
    state.status.set(term.device, st);
    li.dataset.status = st;
    li.classList.toggle("selected", sel);
    li.querySelector(".row").setAttribute("aria-pressed", String(sel));
    li.querySelector(".st").textContent = t("status." + st);
    const meta = [ago(term.last_seen_ms)];
    if (st === "moving") meta.push(kmh(term.fix.speed_mps));
    li.querySelector(".meta").textContent = meta.join(" · ");
    const bat = li.querySelector(".bat");
    bat.textContent = term.battery_pct == null ? "" : `${term.battery_pct}%`;
    bat.classList.toggle("low", term.battery_pct != null && term.battery_pct < 20);
    li.hidden = !matches(term, st);
  }

  function sortRows() {
    const list = $("#terminal-list");
    const ids = [...rows.keys()].sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
    for (const id of ids) list.appendChild(rows.get(id));
  }

  function refresh(redraw) {
    const c = { total: 0, online: 0, moving: 0, stale: 0, offline: 0 };
    let visible = 0;
    for (const term of state.terminals.values()) {
      const st = state.status.get(term.device);
      c.total++;
      if (term.online) c.online++;
      if (st in c) c[st]++;
      if (!rows.get(term.device).hidden) visible++;
    }
    for (const k in c) $("#count-" + k).textContent = c[k];
    for (const b of document.querySelectorAll(".count")) {
      b.setAttribute("aria-pressed", String(b.dataset.filter === state.statusFilter));
      b.setAttribute("aria-label", t("count.filterAria", { label: b.querySelector(".lbl").textContent }));
    }
    const empty = $("#list-empty");
    empty.hidden = visible > 0;
    empty.textContent = c.total ? t("list.empty") : t("list.none");
    renderDetail();
    if (redraw) map.requestDraw();
  }

  // ---- selection, details and track -------------------------------------------------------
  const FIELDS = ["lastFix", "lastSeen", "speed", "course", "accuracy", "position", "battery", "source", "track"];
  let detailFor;   // which device the detail skeleton was built for

  function renderDetail() {
    const el = $("#detail"), term = state.terminals.get(state.selected);
    if (!term) {
      if (detailFor !== null) { el.innerHTML = '<p class="hint"></p>'; detailFor = null; }
      el.querySelector(".hint").textContent = t("detail.hint");
      el.dataset.device = "";
      return;
    }
    if (detailFor !== term.device) {
      el.innerHTML = '<div class="detail-head"><span class="dot" aria-hidden="true"></span><h2 class="dev"></h2>' +
        '<span class="badge"></span><span class="spacer"></span>' +
        '<button type="button" class="btn btn-small act-center"></button>' +
        '<button type="button" class="btn btn-small btn-icon act-close"><span aria-hidden="true">×</span></button></div>' +
        '<dl class="facts">' + FIELDS.map((f) => `<div class="f-${f}"><dt></dt><dd></dd></div>`).join("") + "</dl>" +
        '<figure class="snapshot" hidden><img alt=""><figcaption></figcaption></figure>';
      detailFor = term.device;
    }
    const st = state.status.get(term.device), f = term.fix, tr = state.track;
    el.dataset.device = term.device;
    el.dataset.status = st;
    el.querySelector(".dev").textContent = term.device;
    el.querySelector(".badge").textContent = t("status." + st);
    const center = el.querySelector(".act-center");
    center.textContent = t("detail.center");
    center.setAttribute("aria-label", t("detail.centerAria", { id: term.device }));
    center.disabled = !f;
    el.querySelector(".act-close").setAttribute("aria-label", t("detail.closeAria"));
    const na = t("unknown");
    let track = na;
    if (tr && tr.loading) track = t("track.loading");
    else if (tr && tr.error) track = t("track.error", { msg: tr.error });
    else if (tr) track = t("track.summary", { n: tr.points.length, d: distance(pathLength(tr.points)) });
    const values = {
      lastFix: f ? `${clockTime(f.time_ms)} · ${ago(f.time_ms)}` : na,
      lastSeen: ago(term.last_seen_ms),
      speed: f ? kmh(f.speed_mps) : na,
      course: f && f.course_deg != null ? `${Math.round(f.course_deg)}°` : na,
      accuracy: f && f.accuracy_m != null ? `± ${distance(f.accuracy_m)}` : na,
      battery: term.battery_pct != null ? `${term.battery_pct}%` : na,
      source: f && f.source ? t("source." + f.source) : na,
      position: f ? `${f.lat.toFixed(5)}, ${f.lon.toFixed(5)}` : na,
      track,
    };
    for (const k of FIELDS) {
      const row = el.querySelector(".f-" + k);
      row.querySelector("dt").textContent = t("detail." + k);
      row.querySelector("dd").textContent = values[k];
    }
    // The latest snapshot: same-origin, so the sign-in cookie authorises the image request.
    const fig = el.querySelector(".snapshot"), snap = term.snapshot;
    fig.hidden = !snap;
    if (snap) {
      const img = fig.querySelector("img");
      if (img.getAttribute("src") !== snap.url) img.setAttribute("src", snap.url);
      img.alt = t("detail.snapshotAlt", { id: term.device });
      fig.querySelector("figcaption").textContent =
        `${t("detail.snapshot")} · ${clockTime(snap.captured_ms)} · ${t("trigger." + snap.trigger)}`;
    }
  }

  function select(id, center) {
    if (id === state.selected) { if (center) centerOnSelected(); return; }
    const prev = state.selected;
    if (state.track && state.track.timer) clearTimeout(state.track.timer);
    state.selected = id;
    state.track = id ? { device: id, points: [], keys: new Set(), loading: true, error: null,
      busy: false, again: false, last: 0, timer: null } : null;
    for (const d of [prev, id]) if (state.terminals.has(d)) updateRow(state.terminals.get(d));
    if (id) {
      fetchTrack();
      if (center) centerOnSelected();
    }
    refresh(true);
  }

  function centerOnSelected() {
    const term = state.terminals.get(state.selected);
    if (term && term.fix) map.centerOn(term.fix.lat, term.fix.lon);
  }

  function scheduleTrack() {
    const tr = state.track;
    if (!tr) return;
    if (tr.busy) { tr.again = true; return; }
    if (tr.timer) return;
    tr.timer = setTimeout(() => { tr.timer = null; fetchTrack(); }, Math.max(0, tr.last + TRACK_REFRESH_MS - Date.now()));
  }

  async function fetchTrack() {
    const tr = state.track;
    if (!tr || tr.busy) return;
    tr.busy = true;
    tr.last = Date.now();
    let since = tr.points.length ? tr.points[tr.points.length - 1].time_ms : Math.max(0, serverNow() - TRACK_MS);
    try {
      for (let page = 0; page < 10; page++) {
        const body = await getJSON(`/api/v1/terminals/${encodeURIComponent(tr.device)}/track` +
          `?since_ms=${Math.floor(since)}&limit=${TRACK_LIMIT}`);
        if (state.track !== tr) return;
        for (const p of body.points || []) {
          const key = `${p.seq}:${p.time_ms}`;
          if (!tr.keys.has(key)) { tr.keys.add(key); tr.points.push(p); }
        }
        if (!body.points || body.points.length < TRACK_LIMIT) break;
        since = body.points[body.points.length - 1].time_ms;
      }
      tr.points.sort((a, b) => a.time_ms - b.time_ms || a.seq - b.seq);
      const cutoff = serverNow() - TRACK_MS;
      while (tr.points.length && tr.points[0].time_ms < cutoff) tr.keys.delete(`${tr.points[0].seq}:${tr.points.shift().time_ms}`);
      tr.error = null;
    } catch (err) {
      tr.error = err.message;
      if (isAuthError(err)) showNotice(noticeFor(err));
    } finally {
      tr.busy = false;
      tr.loading = false;
    }
    if (state.track !== tr) return;
    renderDetail();
    map.requestDraw();
    if (tr.again) { tr.again = false; scheduleTrack(); }
  }

  // ---- map --------------------------------------------------------------------------------
  function markers() {
    const out = [];
    for (const term of state.terminals.values()) {
      const f = term.fix;
      if (!f || !Number.isFinite(f.lat) || !Number.isFinite(f.lon)) continue;
      const st = state.status.get(term.device) || statusOf(term);
      out.push({ id: term.device, lat: f.lat, lon: f.lon, acc: f.accuracy_m, status: st, color: COLORS[st], course: f.course_deg });
    }
    return out;
  }

  const map = window.YJMap.createMap($("#map"), {
    markers,
    selected: () => state.selected,
    track() {
      const tr = state.track, term = tr && state.terminals.get(tr.device);
      if (!term) return null;
      const points = tr.points.slice(), f = term.fix;
      if (f && (!points.length || f.time_ms > points[points.length - 1].time_ms)) points.push(f);
      return { color: TRACK_COLOR, points };
    },
    pick(id) {
      select(id, false);
      if (id) rows.get(id)?.scrollIntoView({ block: "nearest" });
    },
    emptyText: () => t("map.empty"),
    distance,
    drawn(n) { window.yijing.positionsDrawn = n; },
  });

  // ---- controls ---------------------------------------------------------------------------
  function renderMe() {
    const el = $("#me");
    el.hidden = !state.me;
    if (state.me) el.textContent = `${state.me.name} · ${t("role." + state.me.role)}`;
  }

  function renderAll() {
    i18n.apply(document);
    for (const term of state.terminals.values()) updateRow(term);
    refresh(true);
    renderConn();
    renderNotice();
    renderMe();
  }

  $("#lang").addEventListener("click", () => { i18n.set(i18n.lang === "zh" ? "en" : "zh"); renderAll(); });
  $("#fit").addEventListener("click", () => map.fit());
  $("#zoom-in").addEventListener("click", () => map.zoom(1.6));
  $("#zoom-out").addEventListener("click", () => map.zoom(1 / 1.6));
  $(".notice-reload").addEventListener("click", () => location.reload());
  $("#filter").addEventListener("input", (e) => {
    state.textFilter = e.target.value.trim().toLowerCase();
    for (const term of state.terminals.values()) updateRow(term);
    refresh(false);
  });
  for (const b of document.querySelectorAll(".count")) {
    b.addEventListener("click", () => {
      state.statusFilter = state.statusFilter === b.dataset.filter ? "" : b.dataset.filter;
      for (const term of state.terminals.values()) updateRow(term);
      refresh(false);
    });
  }
  $("#terminal-list").addEventListener("click", (e) => {
    const li = e.target.closest("li[data-device]");
    if (li) select(li.dataset.device, true);
  });
  $("#detail").addEventListener("click", (e) => {
    if (e.target.closest(".act-center")) centerOnSelected();
    else if (e.target.closest(".act-close")) select(null);
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && state.selected && !e.target.matches("input")) select(null);
  });

  // Once a second: "N s ago", stale transitions and the reconnect countdown.
  setInterval(() => {
    let changed = false;
    for (const term of state.terminals.values()) {
      const before = state.status.get(term.device);
      updateRow(term);
      changed = changed || state.status.get(term.device) !== before;
    }
    refresh(changed);
    renderConn();
  }, 1000);

  async function start() {
    renderAll();
    try {
      state.me = await getJSON("/api/v1/me");
      renderMe();
      const snap = await getJSON("/api/v1/terminals");
      apply(snap.terminals || [], snap.server_time_ms, true);
    } catch (err) {
      showNotice(noticeFor(err));
      if (isAuthError(err)) { setConn("closed"); return; }
    }
    connect();
  }

  start();
})();
