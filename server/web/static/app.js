"use strict";
// The duty officer's live map: a REST snapshot, then a WebSocket of changes and events. This part
// keeps the terminals (by the server's status), counts, unit/status/text filters, a virtual list,
// the selected terminal's details and trail, posts' fences and the optional tiles; dispatch.js,
// alerts.js and tasks.js add their panels through window.YJ (util.js).
(function () {
  const YJ = window.YJ, { t, i18n } = YJ;
  const STALE_MS = 150 * 1000, MOVING_MPS = 0.5;
  const ROW_H = 46, LIST_OVERSCAN = 6;
  // Most urgent first: the order of the count buttons, the legend and the list's sort.
  const STATUSES = ["sos", "dispatched", "off_post", "on_post", "moving", "still", "nofix", "offline"];
  const COLORS = { sos: "#dc2626", dispatched: "#9333ea", off_post: "#d97706", on_post: "#15803d",
    moving: "#2563eb", still: "#0891b2", nofix: "#9ca3af", offline: "#6b7280" };
  const URGENT = { sos: 0, dispatched: 1 };
  const POST_COLORS = { duty_point: "#2563eb", patrol_segment: "#059669", guard_and_patrol: "#0d9488",
    key_prevention_area: "#dc2626", strict_order_area: "#b45309", neighbourhood_watch: "#7c3aed",
    internal_prevention: "#475569" };
  const $ = (sel) => document.querySelector(sel);

  const state = {
    terminals: new Map(),   // device -> latest doc from the server
    order: [],              // device ids, urgent first then by id; rebuilt when orderDirty
    orderDirty: true,
    shown: [],              // ids passing the filters, in order
    filtersDirty: true,
    counts: {},
    selected: null,
    textFilter: "",
    statusFilter: "",
    unitFilter: "",
    unitSet: null,          // the filter unit's subtree, or null
    units: new Map(),       // unit_id -> unit
    posts: [],
    tiles: null,
    fitted: false,
    notice: null,           // {key, detail, blocking}
  };
  window.yijing = { terminals: state.terminals, positionsDrawn: 0 };
  YJ.config = { tiles: null, walk_speed_mps: 1.4, circles_min: [1, 3, 5], detour: 1.3 };

  // The server says the status; an older server (or a doc without it) gets the nearest guess.
  function statusOf(term) {
    if (term.status && term.status in COLORS) return term.status;
    if (!term.online || YJ.serverNow() - term.last_seen_ms > STALE_MS) return "offline";
    if (!term.fix) return "nofix";
    return (term.fix.speed_mps ?? 0) >= MOVING_MPS ? "moving" : "still";
  }

  const nameOf = (term) => (term.volunteer && term.volunteer.name) || "";
  const unitName = (id) => (id && state.units.get(id) ? state.units.get(id).name : id || t("unknown"));

  // ---- notices ----------------------------------------------------------------------------
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
    const role = YJ.me ? t("role." + YJ.me.role) : t("unknown");
    el.classList.toggle("blocking", !!n.blocking);
    el.querySelector(".notice-text").textContent = t(n.key, { role, msg: n.msg || "" });
    el.querySelector(".notice-detail").textContent = n.detail || "";
    el.querySelector(".notice-reload").hidden = !n.blocking;
  }
  YJ.toast = (err) => showNotice(isAuthError(err) ? noticeFor(err) : { key: "err.action", msg: err.message });

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
      if (Number.isFinite(msg.server_time_ms)) YJ.clock.offsetMs = msg.server_time_ms - Date.now();
      if (msg.type === "hello") {
        greeted = true;
        conn.attempt = 0;
        if (state.notice && !state.notice.blocking) showNotice(null);
        apply(msg.terminals || [], true);
        YJ.emit("hello");   // the parts reload their lists: events may have been missed meanwhile
      } else if (msg.type === "update") {
        apply(msg.terminals || [], false);
      } else if (msg.type === "event" && typeof msg.topic === "string") {
        YJ.emit("event:" + msg.topic, msg.data || {});
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
        const snap = await YJ.get("/api/v1/terminals");
        if (Number.isFinite(snap.server_time_ms)) YJ.clock.offsetMs = snap.server_time_ms - Date.now();
        apply(snap.terminals || [], true);
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

  // ---- data: updates only touch the Map; one frame later counts, list and map catch up -------
  function apply(list, full) {
    if (full) {
      const present = new Set(list.map((x) => x && x.device));
      for (const id of [...state.terminals.keys()]) {
        if (present.has(id)) continue;
        state.terminals.delete(id);
        state.orderDirty = true;
        if (id === state.selected) select(null);
      }
    }
    for (const term of list) {
      if (!term || typeof term.device !== "string") continue;
      if (!term.fix) term.fix = null;
      const old = state.terminals.get(term.device);
      term._st = statusOf(term);
      // The list sorts SOS and dispatched first: re-sort only when that could change.
      if (!old || (old._st !== term._st && (old._st in URGENT || term._st in URGENT))) state.orderDirty = true;
      state.terminals.set(term.device, term);
      if (term.device === state.selected) detail.changed();
    }
    state.filtersDirty = true;
    schedule(true);
  }

  let framePending = false, frameRedraw = false;
  function schedule(redraw) {
    frameRedraw = frameRedraw || redraw;
    if (!framePending) { framePending = true; requestAnimationFrame(frame); }
  }

  function frame() {
    framePending = false;
    if (state.orderDirty) {
      state.order = [...state.terminals.keys()].sort((a, b) =>
        (URGENT[state.terminals.get(a)._st] ?? 9) - (URGENT[state.terminals.get(b)._st] ?? 9) ||
        a.localeCompare(b, "en", { numeric: true }));
      state.orderDirty = false;
      state.filtersDirty = true;
    }
    if (state.filtersDirty) { filterAndCount(); state.filtersDirty = false; }
    renderList();
    detail.render();
    if (frameRedraw) map.requestDraw();
    frameRedraw = false;
    if (!state.fitted && state.terminals.size) {
      state.fitted = true;
      map.fit();
    }
  }

  function passesUnitAndText(term) {
    if (state.unitSet && !state.unitSet.has(term.unit_id)) return false;
    if (!state.textFilter) return true;
    return term.device.toLowerCase().includes(state.textFilter) || nameOf(term).toLowerCase().includes(state.textFilter);
  }

  // Counts follow the unit and text filters (what the officer is looking at), not the status one.
  function filterAndCount() {
    const c = { total: 0, online: 0 };
    for (const s of STATUSES) c[s] = 0;
    const shown = [];
    for (const id of state.order) {
      const term = state.terminals.get(id);
      if (!passesUnitAndText(term)) continue;
      const st = term._st;
      c.total++; c[st]++;
      if (st !== "offline") c.online++;
      const f = state.statusFilter;
      if (!f || f === st || (f === "online" && st !== "offline")) shown.push(id);
    }
    state.counts = c;
    state.shown = shown;
    for (const k in c) { const el = $("#count-" + k); if (el) el.textContent = c[k]; }
    const empty = $("#list-empty");
    empty.hidden = shown.length > 0;
    empty.textContent = c.total || state.terminals.size ? t("list.empty") : t("list.none");
  }

  // ---- the virtual list: only the rows in view exist, whatever the number of terminals --------
  const listEl = $("#terminal-list"), spacer = $("#terminal-list .vl-spacer"), rowsEl = $("#terminal-list .vl-rows");
  const ROW_HTML = '<button type="button" class="row"><span class="dot" aria-hidden="true"></span>' +
    '<span class="dev"></span><span class="st"></span><span class="meta"></span><span class="bat"></span></button>';

  function renderList() {
    const n = state.shown.length;
    spacer.style.height = `${n * ROW_H}px`;
    const first = Math.max(0, Math.floor(listEl.scrollTop / ROW_H) - LIST_OVERSCAN);
    const last = Math.min(n, Math.ceil((listEl.scrollTop + listEl.clientHeight) / ROW_H) + LIST_OVERSCAN);
    rowsEl.style.transform = `translateY(${first * ROW_H}px)`;
    while (rowsEl.children.length < last - first) {
      const li = document.createElement("li");
      li.innerHTML = ROW_HTML;
      rowsEl.appendChild(li);
    }
    while (rowsEl.children.length > last - first) rowsEl.lastChild.remove();
    for (let i = first; i < last; i++) fillRow(rowsEl.children[i - first], state.terminals.get(state.shown[i]));
  }

  function fillRow(li, term) {
    const st = term._st, sel = term.device === state.selected, name = nameOf(term);
    li.dataset.device = term.device;
    li.dataset.status = st;
    li.classList.toggle("selected", sel);
    li.querySelector(".row").setAttribute("aria-pressed", String(sel));
    li.querySelector(".dev").textContent = name ? `${term.device} · ${name}` : term.device;
    li.querySelector(".st").textContent = t("status." + st);
    const meta = [ago(term.last_seen_ms)];
    if (term.unit_id) meta.push(unitName(term.unit_id));
    if (term.kind === "phone") meta.push(t("kind.phone"));
    if (st === "moving" && term.fix) meta.push(YJ.kmh(term.fix.speed_mps));
    li.querySelector(".meta").textContent = meta.join(" · ");
    const bat = li.querySelector(".bat");
    bat.textContent = term.battery_pct == null ? "" : `${term.battery_pct}%`;
    bat.classList.toggle("low", term.battery_pct != null && term.battery_pct < 20);
  }
  const ago = YJ.ago;
  listEl.addEventListener("scroll", () => schedule(false), { passive: true });

  function renderCountButtons() {
    for (const b of document.querySelectorAll(".count")) {
      b.setAttribute("aria-pressed", String(b.dataset.filter === state.statusFilter));
      b.setAttribute("aria-label", t("count.filterAria", { label: b.querySelector(".lbl").textContent }));
    }
  }

  const detail = window.YJDetail.create($("#detail"), {
    terminal: (id) => state.terminals.get(id),
    post: (id) => state.posts.find((p) => p.post_id === id),
    unitName,
    changed: () => schedule(true),
    authError: (err) => showNotice(noticeFor(err)),
  });
  $("#detail").addEventListener("click", (e) => {
    if (e.target.closest(".act-center")) centerOnSelected();
    else if (e.target.closest(".act-close")) select(null);
  });

  // ---- selection (details and trail: detail.js) -------------------------------------------
  function select(id, center) {
    if (id === state.selected) { if (center) centerOnSelected(); return; }
    state.selected = id;
    detail.show(id);
    if (id && center) centerOnSelected();
    YJ.emit("select", id);
    schedule(true);
  }

  function centerOnSelected() {
    const term = state.terminals.get(state.selected);
    if (term && term.fix) map.centerOn(term.fix.lat, term.fix.lon);
  }

  // ---- map --------------------------------------------------------------------------------
  function markers() {
    const out = [];
    for (const id of state.shown) {
      const term = state.terminals.get(id), f = term.fix;
      if (!f || !Number.isFinite(f.lat) || !Number.isFinite(f.lon)) continue;
      out.push({ id, lat: f.lat, lon: f.lon, acc: f.accuracy_m, status: term._st, color: COLORS[term._st], course: f.course_deg });
    }
    return out;
  }

  function fences() {
    const out = [];
    for (const p of state.posts) {
      if (state.unitSet && !state.unitSet.has(p.unit_id)) continue;
      out.push({ fence: p.fence, color: POST_COLORS[p.kind] || "#475569", label: p.name });
    }
    return out;
  }

  const map = window.YJMap.createMap($("#map"), {
    markers,
    fences,
    pins: () => YJ.pins.flatMap((fn) => fn()),
    tracks() {
      const out = YJ.tracks.flatMap((fn) => fn()), line = detail.trail();
      if (line) out.push(line);
      return out;
    },
    selected: () => state.selected,
    pick(hit) {
      if (hit && hit.kind !== "terminal") { YJ.emit("pick:" + hit.kind, hit.id); return; }
      select(hit ? hit.id : null, false);
      if (hit) {
        const i = state.shown.indexOf(hit.id);
        if (i >= 0 && (i * ROW_H < listEl.scrollTop || (i + 1) * ROW_H > listEl.scrollTop + listEl.clientHeight)) {
          listEl.scrollTop = i * ROW_H - listEl.clientHeight / 2;
        }
      }
    },
    placing: () => !!YJ.placing,
    place: (lat, lon) => YJ.placing && YJ.placing(lat, lon),
    tiles: () => state.tiles,
    emptyText: () => t("map.empty"),
    distance: YJ.distance,
    drawn(n) { window.yijing.positionsDrawn = n; },
  });

  // What the other parts may use.
  Object.assign(YJ, {
    map,
    terminal: (id) => state.terminals.get(id),
    selectedTerminal: () => state.terminals.get(state.selected) || null,
    select,
    units: state.units,
    unitName,
    redraw: () => map.requestDraw(),
    showTab,
  });

  // ---- controls ---------------------------------------------------------------------------
  function showTab(name) {
    for (const b of document.querySelectorAll(".tabs [role=tab]")) {
      const on = b.dataset.tab === name;
      b.setAttribute("aria-selected", String(on));
      b.tabIndex = on ? 0 : -1;
      $("#tab-" + b.dataset.tab).hidden = !on;
    }
    if (name === "terminals") schedule(false);
  }

  function renderMe() {
    const el = $("#me");
    el.hidden = !YJ.me;
    if (YJ.me) el.textContent = `${YJ.me.name} · ${t("role." + YJ.me.role)}`;
    $("#signout").hidden = !YJ.me;
    $("#admin-nav").hidden = !YJ.me || YJ.me.role !== "admin";   // accounts and terminals
  }

  function renderUnits() {
    const sel = $("#unit-filter"), keep = state.unitFilter;
    const children = new Map();
    for (const u of state.units.values()) {
      const p = state.units.has(u.parent_id) ? u.parent_id : "";
      if (!children.has(p)) children.set(p, []);
      children.get(p).push(u);
    }
    sel.replaceChildren(YJ.h("option", { value: "" }, t("filter.allUnits")));
    const walk = (parent, depth) => {
      for (const u of (children.get(parent) || []).sort((a, b) => a.unit_id.localeCompare(b.unit_id))) {
        sel.append(YJ.h("option", { value: u.unit_id }, "\u00a0\u00a0".repeat(depth) + u.name));
        walk(u.unit_id, depth + 1);
      }
    };
    walk("", 0);
    sel.value = keep;
  }

  function setUnitFilter(id) {
    state.unitFilter = id;
    if (!id) state.unitSet = null;
    else {
      const set = new Set([id]);
      let grew = true;
      while (grew) {
        grew = false;
        for (const u of state.units.values()) if (set.has(u.parent_id) && !set.has(u.unit_id)) { set.add(u.unit_id); grew = true; }
      }
      state.unitSet = set;
    }
    state.filtersDirty = true;
    schedule(true);
  }

  function renderAll() {
    i18n.apply(document);
    renderUnits();
    renderCountButtons();
    state.filtersDirty = true;
    schedule(true);
    renderConn();
    renderNotice();
    renderMe();
    YJ.emit("lang");
  }

  $("#lang").addEventListener("click", () => { i18n.set(i18n.lang === "zh" ? "en" : "zh"); renderAll(); });
  $("#fit").addEventListener("click", () => map.fit());
  $("#zoom-in").addEventListener("click", () => map.zoom(1.6));
  $("#zoom-out").addEventListener("click", () => map.zoom(1 / 1.6));
  $(".notice-reload").addEventListener("click", () => location.reload());
  $(".notice-close").addEventListener("click", () => showNotice(null));
  $("#filter").addEventListener("input", (e) => {
    state.textFilter = e.target.value.trim().toLowerCase();
    state.filtersDirty = true;
    schedule(true);
  });
  $("#unit-filter").addEventListener("change", (e) => setUnitFilter(e.target.value));
  for (const b of document.querySelectorAll(".count")) {
    b.addEventListener("click", () => {
      state.statusFilter = state.statusFilter === b.dataset.filter ? "" : b.dataset.filter;
      renderCountButtons();
      state.filtersDirty = true;
      schedule(true);
    });
  }
  for (const b of document.querySelectorAll(".tabs [role=tab]")) b.addEventListener("click", () => showTab(b.dataset.tab));
  listEl.addEventListener("click", (e) => {
    const li = e.target.closest("li[data-device]");
    if (li) select(li.dataset.device, true);
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && state.selected && !e.target.matches("input, textarea, select")) select(null);
  });

  // Once a second: "N s ago" in the rows in view, offline guesses and the reconnect countdown.
  setInterval(() => {
    for (const term of state.terminals.values()) {
      if (term.status) continue;   // the server re-evaluates its own statuses (LiveState.tick)
      const st = statusOf(term);
      if (st !== term._st) { term._st = st; state.filtersDirty = true; }
    }
    schedule(state.filtersDirty);
    renderConn();
  }, 1000);

  async function loadOrg() {
    try {
      const body = await YJ.get("/api/v1/org/units");
      state.units.clear();
      for (const u of body.units || []) state.units.set(u.unit_id, u);
      renderUnits();
      YJ.emit("units");
    } catch (err) { /* no org yet: the filter offers "all units" only */ }
    try {
      state.posts = (await YJ.get("/api/v1/org/posts")).posts || [];
    } catch (err) { state.posts = []; }
    schedule(true);
  }

  async function loadConfig() {
    try {
      Object.assign(YJ.config, await YJ.get("/api/v1/config"));
    } catch (err) { /* an older server: no tiles, the default walking figures */ }
    if (YJ.config.tiles && window.YJTiles) state.tiles = window.YJTiles.create(YJ.config.tiles, () => map.requestDraw());
    map.requestDraw();
  }

  async function start() {
    renderAll();
    showTab("terminals");
    try {
      YJ.me = await YJ.get("/api/v1/me");
      renderMe();
      YJ.emit("me");
      const snap = await YJ.get("/api/v1/terminals");
      if (Number.isFinite(snap.server_time_ms)) YJ.clock.offsetMs = snap.server_time_ms - Date.now();
      apply(snap.terminals || [], true);
    } catch (err) {
      showNotice(noticeFor(err));
      if (isAuthError(err)) { setConn("closed"); return; }
    }
    loadConfig();
    loadOrg();
    connect();
  }

  // After every deferred part (dispatch.js, alerts.js, tasks.js) has registered its listeners.
  document.addEventListener("DOMContentLoaded", start);
})();
