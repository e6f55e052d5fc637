"use strict";
// The inspector's page (督导): a unit and a period, a report job with progress, the report
// (figures, breadcrumb, units below, volunteers, their shifts, flags, chart, CSV), a shift's
// timeline drawn as SVG, and spot checks with live results. Strings come from i18n.js.
(function () {
  const i18n = window.YJ_I18N, t = (key, vars) => i18n.t(key, vars);
  const $ = (sel) => document.querySelector(sel);
  const JOB_POLL_MS = 500, CHECK_POLL_MS = 1000, GIVE_UP_MS = 10 * 60 * 1000;
  const STATE_COLORS = {
    on_post: "#15803d", on_post_backfilled: "#86efac", off_post: "#f97316", no_fix: "#9ca3af", offline: "#dc2626",
  };
  const ROLLCALL_OK = "#1d4ed8", ROLLCALL_MISSED = "#7f1d1d";
  // On post on a phone's word alone (docs/metrics.md §7): pale, hatched on-duty green.
  const PHONE_ONLY = "#15803d";
  const phoneShare = (r) => `${pct(r.phone_only_rate)}`;
  const trustName = (x) => { const k = "trust." + x, s = t(k); return x && s !== k ? s : NA(); };
  const NA = () => t("unknown");

  const state = {
    me: null,
    units: null,           // [{unit_id, name, level, parent_id}] or null while loading
    unitsError: null,
    unit: null,            // the current unit's id
    job: null,             // {status, done, total, error}
    jobSeq: 0,
    report: null,          // UnitReportJSON
    params: null,          // {unit, from, to} the report was run with
    volunteer: null,       // volunteer_id whose shifts are listed
    timeline: null,        // {id, loading, error, detail}
    check: null,           // {data: CheckJSON, offsetMs}
    checkSeq: 0,
    history: null,         // [{check_id, ...}]
    message: null,         // {key, vars, detail}
  };
  const hooks = { progress: [], checkPolls: 0 };
  window.yijingReports = hooks;

  // ---- DOM helpers --------------------------------------------------------------------------
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of kids.flat()) if (c != null) el.append(c);
    return el;
  }
  const SVG_NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...kids) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, String(v));
    for (const c of kids) if (c != null) el.append(c);
    return el;
  }
  const table = (el, head, rows, foot) => {
    el.replaceChildren(
      h("thead", null, h("tr", null, head.map((c) => h("th", { scope: "col", class: c[1] || null, text: t(c[0]) })))),
      h("tbody", null, rows), ...(foot ? [h("tfoot", null, foot)] : []));
  };

  // ---- formatting ---------------------------------------------------------------------------
  const pct = (r) => (r == null || !Number.isFinite(r) ? NA() : `${(r * 100).toFixed(1)}%`);
  function hm(s) {
    if (s == null || !Number.isFinite(s)) return NA();
    const m = Math.round(Math.abs(s) / 60);
    return `${s < 0 ? "-" : ""}${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}`;
  }
  const sum = (obj) => Object.values(obj || {}).reduce((a, b) => a + (Number(b) || 0), 0);
  const tz = () => (state.report && state.report.period && state.report.period.tz) || undefined;
  const formatters = new Map();
  function fmt(ms, withDate, zone = tz()) {
    if (ms == null) return NA();
    const key = `${i18n.locale}|${zone}|${withDate}`;
    if (!formatters.has(key)) {
      const opts = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
      if (withDate) Object.assign(opts, { month: "2-digit", day: "2-digit" });
      try { formatters.set(key, new Intl.DateTimeFormat(i18n.locale, { ...opts, timeZone: zone })); }
      catch (e) { formatters.set(key, new Intl.DateTimeFormat(i18n.locale, opts)); }   // unknown tz
    }
    return formatters.get(key).format(new Date(ms));
  }
  const fmtRange = (a, b, zone = tz()) => `${fmt(a, true, zone)}–${fmt(b, false, zone)}`;
  function minuteIn(ms, zone) {   // minute of the hour in that time zone
    try { return Number(new Intl.DateTimeFormat("en-GB", { minute: "numeric", timeZone: zone }).format(new Date(ms))); }
    catch (e) { return new Date(ms).getMinutes(); }
  }
  function today() {
    const d = new Date();
    return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
  }
  const flagName = (kind) => { const k = "flag." + kind, s = t(k); return s === k ? kind : s; };
  const FLAG_UNITS = { speed_jump: "mps", still_in_drawer: "h", shared_terminal: "h", clock_skew: "s",
    future_time: "fixes", signature_failures: "frames", spot_check_gap: "s" };
  function flagValue(f) {
    const v = f.value, unit = FLAG_UNITS[f.kind];
    if (typeof v !== "number" || !Number.isFinite(v)) return "";
    if (unit === "h") return hm(v * 3600);
    if (unit === "mps") return t("flagv.mps", { n: v.toFixed(1) });
    if (unit) return t("flagv." + unit, { n: Math.round(v) });
    return String(v);
  }
  function plain(x) {
    if (x == null) return "";
    if (typeof x !== "object") return String(x);
    if (Array.isArray(x)) return x.map(plain).join(", ");
    return Object.entries(x).map(([k, v]) => `${k}: ${plain(v)}`).join(", ");
  }
  const levelName = (lv) => { const k = "level." + lv, s = t(k); return s === k ? lv || "" : s; };
  const volunteerName = (id) => {
    const v = state.report && state.report.volunteers.find((x) => x.volunteer_id === id);
    return v ? v.name : id || NA();
  };

  // ---- server access ------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  // X-CSRF-Token: the session's token from the yj_csrf cookie (see util.js).
  const csrfToken = () => {
    const m = document.cookie.match(/(?:^|;\s*)yj_csrf=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : "";
  };
  async function api(method, url, body) {
    let res, data = null;
    const headers = { Accept: "application/json" };
    const csrf = csrfToken();
    if (csrf && method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    try {
      res = await fetch(url, { method, headers, credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new ApiError(0, String(e.message || e));
    }
    try { data = await res.json(); } catch (e) { /* not JSON */ }
    // The session ended (it existed: the CSRF cookie is there): sign in again, then come back.
    if (res.status === 401 && csrf) location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
    if (!res.ok) throw new ApiError(res.status, (data && data.error) || `${res.status} ${res.statusText}`);
    return data;
  }
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const q = (o) => new URLSearchParams(o).toString();
  const enc = encodeURIComponent;

  // ---- the message area ---------------------------------------------------------------------
  function say(key, vars, detail) { state.message = key ? { key, vars, detail } : null; renderMessage(); }
  function sayError(err) {
    if (err.status === 401) say("rp.err.signin", null, err.message);
    else if (err.status === 403) say("rp.err.forbidden", null, err.message);
    else if (err.status === 0) say("rp.err.network", { msg: err.message });
    else say("err.server", { msg: err.message });
  }
  function renderMessage() {
    const el = $("#message"), m = state.message;
    el.hidden = !m;
    if (!m) return;
    const role = state.me ? t("role." + state.me.role) : NA();
    el.querySelector(".message-text").textContent = t(m.key, { role, ...(m.vars || {}) });
    el.querySelector(".message-detail").textContent = m.detail || "";
  }

  // ---- the unit tree ------------------------------------------------------------------------
  const unitById = () => new Map((state.units || []).map((u) => [u.unit_id, u]));
  function ancestors(id) {
    const by = unitById(), out = new Set();
    for (let u = by.get(id); u && !out.has(u.unit_id); u = by.get(u.parent_id)) out.add(u.unit_id);
    return out;
  }
  function renderTree() {
    const nav = $("#unit-tree");
    if (state.unitsError) { nav.replaceChildren(h("p", { class: "muted", text: state.unitsError })); return; }
    if (!state.units) { nav.replaceChildren(h("p", { class: "muted", text: t("rp.unitsLoading") })); return; }
    if (!state.units.length) { nav.replaceChildren(h("p", { class: "muted", text: t("rp.unitsEmpty") })); return; }
    const by = unitById(), kids = new Map(), open = ancestors(state.unit);
    for (const u of state.units) {
      const p = by.has(u.parent_id) ? u.parent_id : null;
      if (!kids.has(p)) kids.set(p, []);
      kids.get(p).push(u);
    }
    const list = (parent) => h("ul", null, kids.get(parent).map((u) => h("li", null,
      h("button", { type: "button", class: "unit-btn", "data-unit": u.unit_id,
        "aria-current": u.unit_id === state.unit ? "true" : null },
      h("span", { class: "unit-name", text: u.name }), h("span", { class: "level", text: levelName(u.level) })),
      kids.has(u.unit_id) && (parent === null || open.has(u.unit_id)) ? list(u.unit_id) : null)));
    nav.replaceChildren(list(null));
  }

  function choose(unitId) {
    if (unitId === state.unit) return;
    state.unit = unitId;
    renderTree();
    renderCurrent();
    loadHistory();
  }
  function renderCurrent() {
    const u = unitById().get(state.unit);
    const name = u ? u.name : state.unit || t("rp.none");
    $("#current-unit").textContent = name;
    $("#sc-unit").textContent = name;
    $("#sc-start").disabled = !state.unit;
  }

  // ---- the report job -----------------------------------------------------------------------
  async function runReport(unit, from, to, all = $("#all-vols").checked) {
    if (!unit) { say("rp.pickUnit"); return; }
    if (!from || !to || from > to) { say("rp.badPeriod"); return; }
    const seq = ++state.jobSeq;
    $("#from").value = from; $("#to").value = to; $("#all-vols").checked = all;
    choose(unit);
    say(null);
    Object.assign(state, { report: null, params: null, volunteer: null, timeline: null });
    state.job = { status: "queued", done: 0, total: 0 };
    hooks.progress = [];
    renderAllReport();
    try {
      // Volunteers: those of the unit itself (the server's default), or of its whole subtree.
      let { job } = await api("POST", "/api/v1/reports/jobs", all ? { unit, from, to, volunteers: "all" } : { unit, from, to });
      while (seq === state.jobSeq) {
        state.job = job;
        renderJob();
        if (job.status === "done" || job.status === "failed") break;
        await sleep(JOB_POLL_MS);
        if (seq !== state.jobSeq) return;
        ({ job } = await api("GET", `/api/v1/reports/jobs/${enc(job.id)}`));
      }
      if (seq !== state.jobSeq) return;
      if (job.status === "failed") { say("rp.failed", { msg: job.error || NA() }); return; }
      state.report = job.report;
      state.params = { unit, from, to, all };
      renderAllReport();
    } catch (err) {
      if (seq !== state.jobSeq) return;
      state.job = { status: "failed", done: 0, total: 0, error: err.message };
      renderJob();
      sayError(err);
    }
  }

  function renderJob() {
    const j = state.job, box = $("#job");
    box.hidden = !j;
    if (!j) return;
    const total = Math.max(0, j.total || 0), done = Math.min(total, Math.max(0, j.done || 0));
    const bar = $("#job-bar");
    box.dataset.status = j.status;
    bar.setAttribute("aria-valuemax", String(total || 1));
    bar.setAttribute("aria-valuenow", String(j.status === "done" && !total ? 1 : done));
    bar.querySelector(".bar-fill").style.width = `${j.status === "done" ? 100 : total ? (100 * done) / total : 0}%`;
    let text;
    if (j.status === "done") text = t("rp.ready");
    else if (j.status === "failed") text = t("rp.failed", { msg: j.error || NA() });
    else if (!total) text = t("rp.queued");
    else text = t("rp.progress", { done, total });
    $("#job-text").textContent = text;
    bar.setAttribute("aria-valuetext", text);
    const last = hooks.progress[hooks.progress.length - 1];
    if (!last || last[0] !== done || last[1] !== total || last[2] !== j.status) hooks.progress.push([done, total, j.status]);
  }

  // ---- the report ---------------------------------------------------------------------------
  function renderAllReport() {
    renderJob();
    renderReport();
    renderTimeline();
  }

  function renderReport() {
    const r = state.report;
    $("#report-hint").hidden = !!r || !!(state.job && state.job.status !== "failed");
    $("#report-body").hidden = !r;
    if (!r) return;
    const p = state.params, tot = r.totals || {};
    $("#report-h").textContent = `${r.unit.name} · ${levelName(r.unit.level)}`;
    $("#report-period").textContent = t("rp.periodShown", {
      from: r.period.from, to: r.period.to, tz: r.period.tz || NA() });
    renderCrumbs(r);
    const width = (r) => `width:${Math.max(0, Math.min(100, (r || 0) * 100))}%`;
    const fig = (key, value, sub, rate, phone) => h("div", { class: "figure", "data-fig": key },
      h("span", { class: "fig-label", text: t("fig." + key) }), h("span", { class: "fig-value", text: value }),
      rate == null ? null : h("span", { class: "meter", "aria-hidden": "true" },
        h("span", { style: width(phone == null ? rate : rate - phone) }),
        phone == null ? null : h("span", { class: "phone-only", style: width(phone) })),
      h("span", { class: "fig-sub", text: sub }),
      phone == null ? null : h("span", { class: "fig-sub fig-phone",
        text: t("fig.onDutyPhone", { rate: pct(phone), on: hm(tot.phone_on_post_s) }) }));
    $("#figures").replaceChildren(
      fig("onDuty", pct(tot.on_duty_rate), t("fig.onDutySub", { on: hm(tot.on_post_s), sched: hm(tot.scheduled_s) }), tot.on_duty_rate,
        tot.on_duty_rate == null ? null : Math.min(tot.on_duty_rate, tot.phone_only_rate || 0)),
      fig("usage", pct(tot.usage_rate), t("fig.usageSub",
        { n: tot.terminals ?? NA(), alive: hm(tot.terminal_alive_s), sched: hm(tot.terminal_scheduled_s) }), tot.usage_rate),
      fig("answer", pct(tot.spot_check_answer_rate),
        t("fig.answerSub", { a: tot.spot_checks_answered ?? 0, s: tot.spot_checks_sent ?? 0 }), tot.spot_check_answer_rate),
      fig("flags", String(tot.flags ? sum(tot.flags) : (r.flags || []).length),
        t("fig.flagsSub", { shifts: tot.shifts ?? 0, vols: tot.volunteers ?? 0 })));
    const period = q({ from: p.from, to: p.to });
    const chart = $("#chart"), src = `/api/v1/reports/units/${enc(r.unit.unit_id)}/chart.svg?${period}&lang=${i18n.lang}`;
    if (chart.getAttribute("src") !== src) chart.setAttribute("src", src);
    chart.alt = t("rp.chartAlt", { unit: r.unit.name });
    $("#csv-units").href = `/api/v1/reports/units/${enc(r.unit.unit_id)}/units.csv?${period}`;
    $("#csv-volunteers").href = `/api/v1/reports/units/${enc(r.unit.unit_id)}/volunteers.csv?${period}${p.all ? "&volunteers=all" : ""}`;
    renderChildren(r);
    renderVolunteers(r);
    renderShifts(r);
    $("#flags").replaceChildren(...flagItems(r.flags || []));
  }

  function renderCrumbs(r) {
    const path = (r.path || []).slice();
    if (!path.length || path[path.length - 1].unit_id !== r.unit.unit_id) path.push(r.unit);
    const known = state.units ? unitById() : null;
    $("#crumbs").replaceChildren(h("ol", null, path.map((u, i) => {
      const last = i === path.length - 1;
      const label = `${u.name}`;
      if (last) return h("li", null, h("span", { "aria-current": "page", text: label }));
      if (known && !known.has(u.unit_id)) return h("li", null, h("span", { class: "muted", text: label }));
      return h("li", null, h("button", { type: "button", class: "link", "data-unit": u.unit_id, text: label }));
    })));
  }

  const drill = (unit) => state.params && runReport(unit, state.params.from, state.params.to, state.params.all);

  function rateCell(r) { return h("td", { class: "num" }, pct(r)); }

  function renderChildren(r) {
    const rows = (r.children || []).map((c) => h("tr", { "data-unit": c.unit_id, class: "clickable" },
      h("th", { scope: "row" }, h("button", { type: "button", class: "link", "data-unit": c.unit_id,
        "aria-label": t("rp.drillAria", { name: c.name }), text: c.name })),
      h("td", { text: levelName(c.level) }),
      h("td", { class: "num", text: c.shifts }), h("td", { class: "num", text: c.volunteers }),
      rateCell(c.on_duty_rate), rateCell(c.usage_rate),
      h("td", { class: "num", text: `${c.spot_checks_answered ?? 0}/${c.spot_checks_sent ?? 0} · ${pct(c.spot_check_answer_rate)}` }),
      h("td", { class: "num", text: hm(c.on_post_s) }), h("td", { class: "num", text: hm(c.scheduled_s) }),
      h("td", { class: "num phone-only", text: phoneShare(c) }),
      h("td", { class: "num", text: sum(c.flags) })));
    if (!rows.length) rows.push(h("tr", null, h("td", { colspan: 11, class: "muted", text: t("rp.childrenEmpty") })));
    const tot = r.totals || {};
    const foot = h("tr", null, h("th", { scope: "row", text: t("rp.total") }), h("td"),
      h("td", { class: "num", text: tot.shifts }), h("td", { class: "num", text: tot.volunteers }),
      rateCell(tot.on_duty_rate), rateCell(tot.usage_rate),
      h("td", { class: "num", text: `${tot.spot_checks_answered ?? 0}/${tot.spot_checks_sent ?? 0} · ${pct(tot.spot_check_answer_rate)}` }),
      h("td", { class: "num", text: hm(tot.on_post_s) }), h("td", { class: "num", text: hm(tot.scheduled_s) }),
      h("td", { class: "num phone-only", text: phoneShare(tot) }),
      h("td", { class: "num", text: sum(tot.flags) }));
    table($("#children"), [["col.unit"], ["col.level"], ["col.shifts", "num"], ["col.volunteers", "num"],
      ["col.onDuty", "num"], ["col.usage", "num"], ["col.answer", "num"], ["col.onPost", "num"],
      ["col.scheduled", "num"], ["col.phoneOnly", "num"], ["col.flags", "num"]], rows, foot);
  }

  function renderVolunteers(r) {
    const rows = (r.volunteers || []).map((v) => h("tr", { "data-volunteer": v.volunteer_id, class: "clickable",
      "aria-selected": v.volunteer_id === state.volunteer ? "true" : null },
      h("th", { scope: "row" }, h("button", { type: "button", class: "link", "data-volunteer": v.volunteer_id,
        "aria-label": t("rp.shiftsAria", { name: v.name }), "aria-expanded": String(v.volunteer_id === state.volunteer),
        text: v.name })),
      h("td", { text: v.volunteer_id }), h("td", { class: "num", text: (v.shifts || []).length }),
      rateCell(v.on_duty_rate), rateCell(v.usage_rate),
      h("td", { class: "num", text: hm(v.late_s) }), h("td", { class: "num", text: hm(v.early_leave_s) }),
      h("td", { class: "num", text: `${v.spot_checks_answered ?? 0}/${v.spot_checks_sent ?? 0}` }),
      h("td", { class: "num phone-only", text: phoneShare(v) }),
      h("td", { class: "num", text: sum(v.flags) })));
    if (!rows.length) rows.push(h("tr", null, h("td", { colspan: 10, class: "muted wrap", text: t("rp.volunteersEmpty") })));
    table($("#volunteers"), [["col.name"], ["col.id"], ["col.shifts", "num"], ["col.onDuty", "num"],
      ["col.usage", "num"], ["col.late", "num"], ["col.early", "num"], ["col.answer", "num"],
      ["col.phoneOnly", "num"], ["col.flags", "num"]], rows);
  }

  function renderShifts(r) {
    const v = (r.volunteers || []).find((x) => x.volunteer_id === state.volunteer);
    $("#shifts").hidden = !v;
    if (!v) return;
    $("#shifts-h").textContent = t("rp.shiftsOf", { name: v.name });
    const ids = new Set(v.shifts || []);
    const rows = (r.shifts || []).filter((s) => ids.has(s.shift_id) || s.volunteer_id === v.volunteer_id).map((s) =>
      h("tr", { "data-shift": s.shift_id },
        h("th", { scope: "row", text: s.shift_id }), h("td", { text: s.post_name || s.post_id }),
        h("td", { class: "num", text: fmtRange(s.start_ms, s.end_ms) }), h("td", { text: s.device_id || NA() }),
        rateCell(s.on_duty_rate), rateCell(s.usage_rate),
        h("td", { class: "num", text: `${hm(s.on_post_s)} / ${hm(s.scheduled_s)}` }),
        h("td", { class: "num phone-only", "data-trust": s.trust || null,
          text: `${trustName(s.trust)} · ${phoneShare(s)}` }),
        h("td", { class: "num", text: sum(s.flags) }),
        h("td", null, h("button", { type: "button", class: "btn btn-small", "data-shift": s.shift_id,
          "aria-label": t("rp.timelineAria", { id: s.shift_id }), text: t("rp.timeline") }))));
    table($("#shift-table"), [["col.shift"], ["col.post"], ["col.time", "num"], ["col.device"], ["col.onDuty", "num"],
      ["col.usage", "num"], ["col.onPost", "num"], ["col.trust", "num"], ["col.flags", "num"], ["rp.timeline"]], rows);
  }

  function flagItems(flags) {
    if (!flags.length) return [h("li", { class: "muted", text: t("rp.flagsEmpty") })];
    return flags.map((f) => h("li", { "data-kind": f.kind },
      h("span", { class: "flag-kind", text: flagName(f.kind) }),
      h("span", { class: "flag-when", text: f.start_ms != null ? fmtRange(f.start_ms, f.end_ms ?? f.start_ms) : "" }),
      h("span", { class: "flag-who", text: [f.volunteer_id && volunteerName(f.volunteer_id), f.device_id]
        .filter(Boolean).join(" · ") }),
      h("span", { class: "flag-value", text: flagValue(f) }),
      h("span", { class: "flag-detail", text: plain(f.detail) }),
      f.shift_id ? h("button", { type: "button", class: "btn btn-small", "data-shift": f.shift_id,
        "aria-label": t("rp.timelineAria", { id: f.shift_id }), text: t("rp.timeline") }) : null));
  }

  // ---- a shift's timeline -------------------------------------------------------------------
  async function openShift(id) {
    const tl = { id, loading: true, error: null, detail: null };
    state.timeline = tl;
    renderTimeline();
    const sec = $("#timeline");
    sec.scrollIntoView({ block: "nearest" });
    sec.focus({ preventScroll: true });
    try {
      tl.detail = await api("GET", `/api/v1/reports/shifts/${enc(id)}`);
    } catch (err) {
      tl.error = err.message;
      sayError(err);
    }
    tl.loading = false;
    if (state.timeline === tl) renderTimeline();
  }

  function renderTimeline() {
    const tl = state.timeline, sec = $("#timeline"), body = $("#timeline-body");
    sec.hidden = !tl;
    if (!tl) return;
    $("#timeline-h").textContent = t("tl.title", { id: tl.id });
    if (!tl.detail) {
      body.replaceChildren(h("p", { class: "muted", text: tl.loading ? t("tl.loading") : tl.error }));
      return;
    }
    const d = tl.detail, s = d.shift || {}, segs = d.segments || [], zone = d.tz || tz();
    const start = s.start_ms ?? (segs.length ? segs[0].start_s * 1000 : 0);
    const end = s.end_ms ?? (segs.length ? segs[segs.length - 1].end_s * 1000 : start + 1);
    const vol = (d.volunteer && d.volunteer.name) || s.volunteer_id || NA();
    const post = (d.post && d.post.name) || s.post_id || NA();
    const tally = d.tally || {};
    const facts = [["scheduled", hm(tally.scheduled_s)], ["on_post", hm(tally.on_post_s), "on_post"],
      ["on_post_backfilled", hm(tally.on_post_backfilled_s), "on_post_backfilled"],
      ["off_post", hm(tally.off_post_s), "off_post"], ["no_fix", hm(tally.no_fix_s), "no_fix"],
      ["offline", hm(tally.offline_s), "offline"], ["on_duty_rate", pct(tally.on_duty_rate)],
      ["usage_rate", pct(tally.usage_rate)], ["late", hm(tally.late_s)], ["early_leave", hm(tally.early_leave_s)],
      // docs/metrics.md §7: how much of the rate rests on a phone's word alone.
      ["phone_on_post", hm(tally.phone_on_post_s), "phone_only"], ["trust", trustName(d.trust)]];
    const phones = d.phones || [];
    const devices = (d.devices && d.devices.length ? d.devices : [s.device_id].filter(Boolean))
      .map((id) => (phones.includes(id) ? t("tl.phone", { id }) : id)).join(", ");
    body.replaceChildren(
      h("p", { class: "muted" }, `${t("tl.meta", { volunteer: vol, post, device: devices || NA() })} · ${fmtRange(start, end, zone)}`),
      band(tl.id, start, end, segs, d.roll_calls || [], zone, d.phone_only || []),
      legend(phones.length > 0),
      h("dl", { class: "tally" }, facts.map(([k, v, st]) => h("div", { "data-tally": k },
        h("dt", null, st === "phone_only" ? h("span", { class: "swatch phone-only", "aria-hidden": "true" })
          : st ? h("span", { class: "swatch", style: `background:${STATE_COLORS[st]}`, "aria-hidden": "true" }) : null,
          t("tally." + k)), h("dd", { text: v })))),
      h("p", null, h("a", { href: `/api/v1/reports/shifts/${enc(tl.id)}/timeline.png?lang=${i18n.lang}`,
        target: "_blank", rel: "noopener", text: t("tl.png") })),
      h("ul", { class: "flags" }, flagItems(d.flags || [])));
  }

  function band(id, start, end, segs, calls, zone, phoneOnly = []) {
    const W = 1000, L = 24, R = 976, top = 26, bh = 30, span = Math.max(1, end - start);
    const x = (ms) => L + ((Math.min(end, Math.max(start, ms)) - start) / span) * (R - L);
    const g = svg("svg", { viewBox: `0 0 ${W} 84`, class: "band", role: "img",
      "aria-label": t("tl.label", { id, from: fmt(start, true, zone), to: fmt(end, true, zone) }) });
    g.append(svg("rect", { x: L, y: top, width: R - L, height: bh, fill: "#f1f5f9", stroke: "#cbd5e1" }));
    for (const sg of segs) {
      const a = sg.start_s * 1000, b = sg.end_s * 1000;
      g.append(svg("rect", { class: "seg", "data-state": sg.state, x: x(a).toFixed(2), y: top,
        width: Math.max(0.5, x(b) - x(a)).toFixed(2), height: bh, fill: STATE_COLORS[sg.state] || "#000" },
      svg("title", null, `${t("state." + sg.state)} · ${fmt(a, false, zone)}–${fmt(b, false, zone)} · ${hm((b - a) / 1000)}`)));
    }
    // On post on a phone's word alone: a hatched strip along the band's foot.
    if (phoneOnly.length) {
      g.append(svg("defs", null, svg("pattern", { id: "phone-hatch", width: 6, height: 6,
        patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
      svg("rect", { width: 6, height: 6, fill: "#dcfce7" }),
      svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: PHONE_ONLY, "stroke-width": 3 }))));
    }
    for (const p of phoneOnly) {
      const a = p.start_s * 1000, b = p.end_s * 1000;
      g.append(svg("rect", { class: "phone-only", x: x(a).toFixed(2), y: top + bh - 8,
        width: Math.max(0.5, x(b) - x(a)).toFixed(2), height: 8, fill: "url(#phone-hatch)" },
      svg("title", null, `${t("state.phone_only")} · ${fmt(a, false, zone)}–${fmt(b, false, zone)} · ${hm((b - a) / 1000)}`)));
    }
    // Hour ticks in the report's time zone; at most about a dozen labels.
    let tick = Math.floor(start / 3600000) * 3600000;
    tick -= minuteIn(tick, zone) * 60000;   // a whole hour of local time (zones with :30 offsets too)
    while (tick < start) tick += 3600000;
    const step = Math.max(1, Math.ceil(span / 3600000 / 12)) * 3600000;
    for (; tick <= end; tick += step) {
      const tx = x(tick).toFixed(2);
      g.append(svg("line", { class: "tick", x1: tx, x2: tx, y1: top + bh, y2: top + bh + 6, stroke: "#64748b" }),
        svg("text", { x: tx, y: top + bh + 20, "text-anchor": "middle", "font-size": 12, fill: "#475569" }, fmt(tick, false, zone)));
    }
    for (const c of calls) {
      // Answered by the deadline counts; a late answer is drawn, but in the "not answered" colour.
      const got = c.answered_ms != null, ok = c.answered ?? (got && c.answered_ms <= c.deadline_ms);
      const cx = x(c.sent_ms), color = ok ? ROLLCALL_OK : ROLLCALL_MISSED;
      const tip = t("tl.rollcallTip", { sent: fmt(c.sent_ms, false, zone), deadline: fmt(c.deadline_ms, false, zone),
        answer: got ? t("tl.answeredAt", { t: fmt(c.answered_ms, false, zone) }) : t("tl.notAnswered") });
      g.append(svg("g", { class: "rollcall", "data-answered": String(ok) },
        svg("title", null, tip),
        svg("line", { x1: cx, x2: cx, y1: 14, y2: top + bh, stroke: color, "stroke-width": 2 }),
        svg("path", { d: `M${cx - 6} 4 L${cx + 6} 4 L${cx} 14 Z`, fill: color }),
        got ? svg("circle", { cx: x(c.answered_ms), cy: top + bh / 2, r: 4, fill: "#fff", stroke: color, "stroke-width": 2 }) : null));
    }
    return g;
  }

  function legend(phone) {
    const items = Object.entries(STATE_COLORS).map(([st, c]) => h("li", null,
      h("span", { class: "swatch", style: `background:${c}`, "aria-hidden": "true" }), t("state." + st)));
    if (phone) items.push(h("li", null, h("span", { class: "swatch phone-only", "aria-hidden": "true" }), t("state.phone_only")));
    items.push(h("li", null, h("span", { class: "swatch tri", style: `border-top-color:${ROLLCALL_OK}`, "aria-hidden": "true" }), t("state.rollcall")),
      h("li", null, h("span", { class: "swatch tri", style: `border-top-color:${ROLLCALL_MISSED}`, "aria-hidden": "true" }), t("state.rollcallMissed")));
    return h("ul", { class: "tl-legend", "aria-label": t("tl.legend") }, items);
  }

  // ---- spot checks --------------------------------------------------------------------------
  const settled = (c) => (c.targets || []).every((x) => x.result !== "pending");

  async function startCheck(ev) {
    ev.preventDefault();
    if (!state.unit) { say("rp.pickUnit"); return; }
    const body = { unit: state.unit };
    const deadline = Number($("#sc-deadline").value);
    if (document.querySelector("input[name=mode]:checked").value === "devices") {
      const devices = $("#sc-devices").value.split(/[,，\s]+/).map((s) => s.trim()).filter(Boolean);
      if (!devices.length) { say("sc.noDevices"); return; }
      body.devices = devices;
    } else {
      const n = Number($("#sc-sample").value);
      if (!Number.isInteger(n) || n < 1) { say("sc.badNumber"); return; }
      body.sample = n;
    }
    if (!Number.isInteger(deadline) || deadline < 1) { say("sc.badNumber"); return; }
    body.deadline_s = deadline;
    body.want_snapshot = $("#sc-snapshot").checked;
    say(null);
    const btn = $("#sc-start");
    btn.disabled = true;
    try {
      const { check } = await api("POST", "/api/v1/spotchecks", body);
      followCheck(check, check.created_ms - Date.now());
      loadHistory();
    } catch (err) {
      sayError(err);
    } finally {
      btn.disabled = !state.unit;
    }
  }

  async function followCheck(check, offsetMs) {
    const seq = ++state.checkSeq;
    state.check = { data: check, offsetMs: Number.isFinite(offsetMs) ? offsetMs : 0 };
    renderCheck();
    // Until every target is settled (or long past the deadline, should the server never say).
    while (!settled(state.check.data) && Date.now() + state.check.offsetMs < check.deadline_ms + GIVE_UP_MS) {
      await sleep(CHECK_POLL_MS);
      if (seq !== state.checkSeq) return;
      try {
        const { check: fresh } = await api("GET", `/api/v1/spotchecks/${enc(check.check_id)}`);
        if (seq !== state.checkSeq) return;
        hooks.checkPolls++;
        state.check.data = fresh;
      } catch (err) {
        sayError(err);
        if (err.status === 401 || err.status === 403 || err.status === 404) return;
      }
      renderCheck();
    }
    loadHistory();
  }

  async function openCheck(id) {
    try {
      const { check } = await api("GET", `/api/v1/spotchecks/${enc(id)}`);
      followCheck(check, state.check ? state.check.offsetMs : 0);
    } catch (err) {
      sayError(err);
    }
  }

  function renderCheck() {
    const box = $("#sc-check"), cur = state.check;
    if (!cur) { box.replaceChildren(); return; }
    const c = cur.data, done = settled(c);
    const left = c.deadline_ms - (Date.now() + cur.offsetMs);
    const clock = (ms) => `${Math.floor(ms / 60000)}:${String(Math.floor(ms / 1000) % 60).padStart(2, "0")}`;
    const status = done ? t("sc.settled") : left > 0 ? t("sc.countdown", { t: clock(left) }) : t("sc.expired");
    const rows = (c.targets || []).map((x) => h("tr", { "data-device": x.device_id, "data-result": x.result },
      h("th", { scope: "row", text: x.device_id }),
      h("td", { text: volunteerName(x.volunteer_id) }),
      h("td", null, h("span", { class: "result", "data-result": x.result, text: t("result." + x.result) }),
        x.reason ? h("span", { class: "target-error", text: x.reason }) : null,
        x.error && x.error !== x.reason ? h("span", { class: "target-error", text: x.error }) : null),
      h("td", { class: "num", text: x.answered_ms != null && x.sent_ms != null
        ? t("sc.seconds", { n: ((x.answered_ms - x.sent_ms) / 1000).toFixed(1) }) : NA() }),
      h("td", { class: "num", text: x.fix ? `${x.fix.lat.toFixed(5)}, ${x.fix.lon.toFixed(5)}` +
        (x.fix.accuracy_m != null ? ` ± ${t("unit.m", { n: Math.round(x.fix.accuracy_m) })}` : "") : NA() }),
      h("td", null, x.snapshot_url ? h("a", { href: x.snapshot_url, target: "_blank", rel: "noopener" },
        h("img", { class: "thumb", src: x.snapshot_url, alt: t("sc.snapshotAlt", { id: x.device_id }) })) : NA())));
    const tbl = h("table", { class: "grid", id: "sc-targets" });
    table(tbl, [["col.device"], ["col.volunteer"], ["col.result"], ["col.answeredAt", "num"],
      ["col.position", "num"], ["col.snapshot"]], rows);
    box.replaceChildren(
      h("div", { class: "sc-head" },
        h("h3", { text: t("sc.heading", { id: c.check_id, time: fmt(c.created_ms, true) }) }),
        h("span", { class: "countdown", "data-done": String(done), text: status })),
      h("p", { class: "muted", text: t("sc.summary", { a: c.answered ?? 0, n: c.total ?? 0, r: pct(c.answer_rate) }) }),
      (c.targets || []).length ? h("div", { class: "table-wrap" }, tbl) : h("p", { class: "muted", text: t("sc.noTargets") }));
  }

  async function loadHistory() {
    const unit = state.unit;
    if (!unit) { state.history = null; renderHistory(); return; }
    try {
      const body = await api("GET", `/api/v1/spotchecks?${q({ unit })}`);
      if (unit !== state.unit) return;
      state.history = body.checks || [];
    } catch (err) {
      if (unit !== state.unit) return;
      state.history = [];
      sayError(err);
    }
    renderHistory();
  }

  function renderHistory() {
    const list = state.history || [];
    const rows = list.map((c) => h("tr", { "data-check": c.check_id },
      h("td", { class: "num", text: fmt(c.created_ms, true) }), h("td", { text: c.created_by || NA() }),
      h("td", { class: "num", text: `${c.answered ?? 0}/${c.total ?? 0}` }), rateCell(c.answer_rate),
      h("td", null, h("button", { type: "button", class: "btn btn-small", "data-check": c.check_id,
        "aria-label": t("sc.openAria", { id: c.check_id }), text: t("sc.open") }))));
    if (!rows.length) rows.push(h("tr", null, h("td", { colspan: 5, class: "muted", text: t("sc.historyEmpty") })));
    table($("#sc-history"), [["col.started", "num"], ["col.by"], ["col.answer", "num"], ["col.rate", "num"], ["sc.open"]], rows);
  }

  // ---- everything, e.g. after a language switch ---------------------------------------------
  function renderMe() {
    const el = $("#me");
    el.hidden = !state.me;
    if (state.me) el.textContent = `${state.me.name} · ${t("role." + state.me.role)}`;
  }
  function renderAll() {
    i18n.apply(document);
    document.title = t("rp.title");
    renderMe(); renderMessage(); renderTree(); renderCurrent(); renderAllReport(); renderCheck(); renderHistory();
  }

  // ---- events -------------------------------------------------------------------------------
  $("#lang").addEventListener("click", () => { i18n.set(i18n.lang === "zh" ? "en" : "zh"); renderAll(); });
  $(".message-close").addEventListener("click", () => say(null));
  $("#unit-tree").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-unit]");
    if (b) choose(b.dataset.unit);
  });
  $("#report-form").addEventListener("submit", (e) => {
    e.preventDefault();
    runReport(state.unit, $("#from").value, $("#to").value);
  });
  $("#crumbs").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-unit]");
    if (b) drill(b.dataset.unit);
  });
  $("#children").addEventListener("click", (e) => {
    const row = e.target.closest("tr[data-unit]");
    if (row) drill(row.dataset.unit);
  });
  $("#volunteers").addEventListener("click", (e) => {
    const row = e.target.closest("tr[data-volunteer]");
    if (!row) return;
    state.volunteer = state.volunteer === row.dataset.volunteer ? null : row.dataset.volunteer;
    renderVolunteers(state.report);
    renderShifts(state.report);
    if (state.volunteer) $("#shifts").scrollIntoView({ block: "nearest" });
  });
  for (const sel of ["#shift-table", "#flags", "#timeline-body"]) {
    $(sel).addEventListener("click", (e) => {
      const b = e.target.closest("button[data-shift]");
      if (b) openShift(b.dataset.shift);
    });
  }
  $("#timeline-close").addEventListener("click", () => { state.timeline = null; renderTimeline(); });
  $("#sc-form").addEventListener("submit", startCheck);
  $("#sc-form").addEventListener("change", () => {
    const devices = document.querySelector("input[name=mode]:checked").value === "devices";
    $("#sc-devices-field").hidden = !devices;
    $("#sc-sample-field").hidden = devices;
  });
  $("#sc-history").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-check]");
    if (b) openCheck(b.dataset.check);
  });

  async function start() {
    $("#from").value = $("#to").value = today();
    renderAll();
    try {
      state.me = await api("GET", "/api/v1/me");
      renderMe();
      const body = await api("GET", "/api/v1/org/units");
      state.units = body.units || [];
    } catch (err) {
      state.unitsError = err.message;
      sayError(err);
      renderTree();
      return;
    }
    const by = unitById(), root = state.units.find((u) => !by.has(u.parent_id));
    renderTree();
    if (root) choose(root.unit_id);
    else renderCurrent();
  }

  start();
})();
