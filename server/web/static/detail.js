"use strict";
// The selected terminal's details: who holds it, unit, post and duty state, last fix, battery,
// the last 30 minutes of its track (fetched, then topped up as fixes arrive) and its latest
// snapshot. app.js owns the selection; this draws the panel and supplies the trail to the map.
(function () {
  const YJ = window.YJ, { t } = YJ;
  const TRACK_MS = 30 * 60 * 1000, TRACK_REFRESH_MS = 3000, TRACK_LIMIT = 5000;
  const TRACK_COLOR = "#4f46e5";

  // hooks: terminal(id) -> doc, post(id) -> post, unitName(id), changed() (redraw), authError(err).
  function create(el, hooks) {
    let selected = null;
    let track = null;   // {device, points, keys, loading, error, busy, again, last, timer}

    const FIELDS = ["volunteer", "unit", "kind", "duty", "lastFix", "lastSeen", "speed", "accuracy", "position",
      "battery", "source", "track"];
    let detailFor;   // which device the detail skeleton was built for

    function render() {
      const term = hooks.terminal(selected);
      el.classList.toggle("empty", !term);
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
      const st = term._st, f = term.fix, tr = track, na = t("unknown");
      el.dataset.device = term.device;
      el.dataset.status = st;
      el.querySelector(".dev").textContent = term.device;
      el.querySelector(".badge").textContent = t("status." + st);
      const center = el.querySelector(".act-center");
      center.textContent = t("detail.center");
      center.setAttribute("aria-label", t("detail.centerAria", { id: term.device }));
      center.disabled = !f;
      el.querySelector(".act-close").setAttribute("aria-label", t("detail.closeAria"));
      let trackText = na;
      if (tr && tr.loading) trackText = t("track.loading");
      else if (tr && tr.error) trackText = t("track.error", { msg: tr.error });
      else if (tr) trackText = t("track.summary", { n: tr.points.length, d: YJ.distance(pathLength(tr.points)) });
      const duty = term.duty;
      const post = duty && hooks.post(duty.post_id);
      const values = {
        volunteer: term.volunteer ? term.volunteer.name : na,
        unit: term.unit_id ? hooks.unitName(term.unit_id) : na,
        // A phone app signs nothing: say so wherever its positions are shown (#10).
        kind: term.kind === "phone" ? t("kind.phoneUnsigned") : (term.kind ? t("kind." + term.kind) : na),
        duty: duty ? `${post ? post.name : duty.post_id} · ${t("state." + String(duty.state).toLowerCase())}` : t("duty.none"),
        lastFix: f ? `${YJ.clockTime(f.time_ms)} · ${YJ.ago(f.time_ms)}` : na,
        lastSeen: YJ.ago(term.last_seen_ms),
        speed: f ? YJ.kmh(f.speed_mps) : na,
        accuracy: f && f.accuracy_m != null ? `± ${YJ.distance(f.accuracy_m)}` : na,
        battery: term.battery_pct != null ? `${term.battery_pct}%` : na,
        source: f && f.source ? t("source." + f.source) : na,
        position: f ? `${f.lat.toFixed(5)}, ${f.lon.toFixed(5)}` : na,
        track: trackText,
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
          `${t("detail.snapshot")} · ${YJ.clockTime(snap.captured_ms)} · ${t("trigger." + snap.trigger)}`;
      }
    }

    function pathLength(points) {
      let m = 0;
      for (let i = 1; i < points.length; i++) {
        const a = points[i - 1], b = points[i], k = Math.cos(((a.lat + b.lat) / 2) * Math.PI / 180);
        m += Math.hypot((b.lat - a.lat) * 111320, (b.lon - a.lon) * 111320 * k);
      }
      return m;
    }

    function scheduleTrack() {
      const tr = track;
      if (!tr) return;
      if (tr.busy) { tr.again = true; return; }
      if (tr.timer) return;
      tr.timer = setTimeout(() => { tr.timer = null; fetchTrack(); }, Math.max(0, tr.last + TRACK_REFRESH_MS - Date.now()));
    }

    async function fetchTrack() {
      const tr = track;
      if (!tr || tr.busy) return;
      tr.busy = true;
      tr.last = Date.now();
      let since = tr.points.length ? tr.points[tr.points.length - 1].time_ms : Math.max(0, YJ.serverNow() - TRACK_MS);
      try {
        for (let page = 0; page < 10; page++) {
          const body = await YJ.get(`/api/v1/terminals/${YJ.enc(tr.device)}/track` +
            `?since_ms=${Math.floor(since)}&limit=${TRACK_LIMIT}`);
          if (track !== tr) return;
          for (const p of body.points || []) {
            const key = `${p.seq}:${p.time_ms}`;
            if (!tr.keys.has(key)) { tr.keys.add(key); tr.points.push(p); }
          }
          if (!body.points || body.points.length < TRACK_LIMIT) break;
          since = body.points[body.points.length - 1].time_ms;
        }
        tr.points.sort((a, b) => a.time_ms - b.time_ms || a.seq - b.seq);
        const cutoff = YJ.serverNow() - TRACK_MS;
        while (tr.points.length && tr.points[0].time_ms < cutoff) tr.keys.delete(`${tr.points[0].seq}:${tr.points.shift().time_ms}`);
        tr.error = null;
      } catch (err) {
        tr.error = err.message;
        if (err.status === 401 || err.status === 403) hooks.authError(err);
      } finally {
        tr.busy = false;
        tr.loading = false;
      }
      if (track !== tr) return;
      hooks.changed();
      if (tr.again) { tr.again = false; scheduleTrack(); }
    }

    function show(id) {
      if (track && track.timer) clearTimeout(track.timer);
      selected = id;
      track = id ? { device: id, points: [], keys: new Set(), loading: true, error: null,
        busy: false, again: false, last: 0, timer: null } : null;
      if (id) fetchTrack();
    }

    // The trail on the map: the fetched points and the live fix, if newer.
    function trail() {
      const term = track && hooks.terminal(track.device);
      if (!term) return null;
      const points = track.points.slice(), f = term.fix;
      if (f && (!points.length || f.time_ms > points[points.length - 1].time_ms)) points.push(f);
      return { color: TRACK_COLOR, points };
    }

    return { show, render, trail, changed: scheduleTrack };
  }

  window.YJDetail = { create };
})();
