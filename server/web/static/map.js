"use strict";
// The map: a <canvas> with an equirectangular projection (x scaled by cos(latitude)), a metric
// grid and scale bar, optional raster tiles (tiles.js), posts' fences, incident circles, trails,
// terminals and pins (incidents, clues, SOS). It draws only when asked (requestDraw), at most
// once per animation frame, so thousands of terminal updates a second cost one draw per frame.
(function () {
  const M_PER_DEG = 111320;               // metres per degree of latitude (and of longitude at the equator)
  const MIN_PPM = 0.0005, MAX_PPM = 40;   // pixels per metre: ~2000 km to ~25 m across 1000 px
  const RANK = { offline: 0, stale: 1, nofix: 1, still: 2, off_post: 3, on_post: 3, moving: 4, dispatched: 5, sos: 6 };
  const FONT = '"Noto Sans CJK SC", "WenQuanYi Micro Hei", "Microsoft YaHei", sans-serif';
  const MAX_LABELS = 300;                 // beyond this many markers in view, no labels: unreadable and slow
  const DETAIL_MARKERS = 2000;            // beyond this, no accuracy circles or heading pointers

  // The largest of 1, 2, 5 × 10^n that is at most m.
  function niceFloor(m) {
    const p = Math.pow(10, Math.floor(Math.log10(m)));
    return m >= 5 * p ? 5 * p : m >= 2 * p ? 2 * p : p;
  }
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

  // hooks: markers() -> [{id, lat, lon, acc, status, color, course}],
  //   fences() -> [{fence, color, label}], pins() -> [{kind, id, lat, lon, color, glyph, rings:[{m, label}], pulse}],
  //   tracks() -> [{color, points:[{lat, lon}]}], selected() -> id | null, pick({kind, id} | null),
  //   placing() -> bool, place(lat, lon), tiles() -> YJTiles layer | null,
  //   emptyText(), drawn(n), distance(m) -> label.
  function createMap(canvas, hooks) {
    const ctx = canvas.getContext("2d");
    const view = { lat: 22.5431, lon: 114.0579, k: Math.cos(22.5431 * Math.PI / 180), ppm: 0.2 };
    let w = 0, h = 0, dpr = 1, pending = false, wantFit = false, hits = [], fitTo = null;

    const project = (lat, lon) => [
      w / 2 + (lon - view.lon) * M_PER_DEG * view.k * view.ppm,
      h / 2 - (lat - view.lat) * M_PER_DEG * view.ppm,
    ];
    const unproject = (x, y) => [
      view.lat - (y - h / 2) / (M_PER_DEG * view.ppm),
      view.lon + (x - w / 2) / (M_PER_DEG * view.k * view.ppm),
    ];

    function requestDraw() {
      if (!pending) { pending = true; requestAnimationFrame(draw); }
    }

    function fitNow() {
      const pts = fitTo || hooks.markers();
      if (!pts.length || !w || !h) return false;
      let s = 90, n = -90, west = 180, e = -180;
      for (const p of pts) { s = Math.min(s, p.lat); n = Math.max(n, p.lat); west = Math.min(west, p.lon); e = Math.max(e, p.lon); }
      const lat = (s + n) / 2, lon = (west + e) / 2;
      view.k = Math.cos(lat * Math.PI / 180);
      // Room for the legend (top), the tools and labels (right) and the scale bar (bottom).
      const pad = w < 500 ? { l: 24, r: 90, t: 76, b: 48 } : { l: 48, r: 120, t: 84, b: 56 };
      const boxW = Math.max(w - pad.l - pad.r, 50), boxH = Math.max(h - pad.t - pad.b, 50);
      const spanX = Math.max((e - west) * M_PER_DEG * view.k, 300), spanY = Math.max((n - s) * M_PER_DEG, 300);
      view.ppm = clamp(Math.min(boxW / spanX, boxH / spanY), MIN_PPM, MAX_PPM);
      view.lon = lon + (w / 2 - (pad.l + boxW / 2)) / (M_PER_DEG * view.k * view.ppm);
      view.lat = lat - (h / 2 - (pad.t + boxH / 2)) / (M_PER_DEG * view.ppm);
      fitTo = null;
      return true;
    }

    function zoomAt(x, y, factor) {
      const [lat, lon] = unproject(x, y);
      view.ppm = clamp(view.ppm * factor, MIN_PPM, MAX_PPM);
      view.lon = lon - (x - w / 2) / (M_PER_DEG * view.k * view.ppm);
      view.lat = lat + (y - h / 2) / (M_PER_DEG * view.ppm);
      requestDraw();
    }

    function panBy(dx, dy) {
      view.lon -= dx / (M_PER_DEG * view.k * view.ppm);
      view.lat = clamp(view.lat + dy / (M_PER_DEG * view.ppm), -85, 85);
      requestDraw();
    }

    function resize() {
      const r = canvas.getBoundingClientRect();
      dpr = window.devicePixelRatio || 1;
      w = Math.round(r.width); h = Math.round(r.height);
      canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
      requestDraw();
    }

    function drawGrid() {
      const step = niceFloor(130 / view.ppm);            // metres between lines, ~65–130 px apart
      const mx = M_PER_DEG * view.k, my = M_PER_DEG;
      const [latTop, lonLeft] = unproject(0, 0), [latBot, lonRight] = unproject(w, h);
      ctx.lineWidth = 1;
      ctx.strokeStyle = "#dfe5ec";
      ctx.beginPath();
      for (let xm = Math.ceil(lonLeft * mx / step) * step; xm <= lonRight * mx; xm += step) {
        const x = Math.round(project(view.lat, xm / mx)[0]) + 0.5;
        ctx.moveTo(x, 0); ctx.lineTo(x, h);
      }
      for (let ym = Math.ceil(latBot * my / step) * step; ym <= latTop * my; ym += step) {
        const y = Math.round(project(ym / my, view.lon)[1]) + 0.5;
        ctx.moveTo(0, y); ctx.lineTo(w, y);
      }
      ctx.stroke();
    }

    function drawScale() {
      const metres = niceFloor(120 / view.ppm), len = metres * view.ppm;
      const x = 16, y = h - 22, label = hooks.distance(metres);
      ctx.font = `12px ${FONT}`;
      const tw = ctx.measureText(label).width;
      ctx.fillStyle = "rgba(255,255,255,0.85)";
      ctx.fillRect(x - 8, y - 22, Math.max(len, tw) + 16, 34);
      ctx.strokeStyle = "#1f2937"; ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(x, y - 5); ctx.lineTo(x, y); ctx.lineTo(x + len, y); ctx.lineTo(x + len, y - 5);
      ctx.stroke();
      ctx.fillStyle = "#1f2937"; ctx.textBaseline = "alphabetic";
      ctx.fillText(label, x, y - 8);
    }

    function halo(text, x, y, color) {
      ctx.strokeStyle = "rgba(255,255,255,0.92)"; ctx.lineWidth = 4; ctx.strokeText(text, x, y);
      ctx.fillStyle = color; ctx.fillText(text, x, y);
    }

    // Posts: circle, polygon or corridor (a polyline with a half width), from geo.fence_to_json.
    function drawFences(list) {
      ctx.lineJoin = "round"; ctx.lineCap = "round";
      const labels = [];
      for (const { fence: f, color, label } of list) {
        if (!f) continue;
        let cx, cy;
        ctx.beginPath();
        if (f.type === "circle") {
          [cx, cy] = project(f.lat, f.lon);
          const r = f.radius_m * view.ppm;
          if (cx + r < 0 || cy + r < 0 || cx - r > w || cy - r > h) continue;
          ctx.arc(cx, cy, Math.max(r, 2), 0, 2 * Math.PI);
          ctx.fillStyle = color; ctx.globalAlpha = 0.1; ctx.fill();
          ctx.globalAlpha = 0.8; ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.stroke();
        } else if (f.type === "polygon" || f.type === "corridor") {
          const pts = (f.points || []).map(([lat, lon]) => project(lat, lon));
          if (!pts.length) continue;
          pts.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
          if (f.type === "polygon") {
            ctx.closePath();
            ctx.fillStyle = color; ctx.globalAlpha = 0.1; ctx.fill();
            ctx.globalAlpha = 0.8; ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.stroke();
          } else {
            ctx.strokeStyle = color; ctx.globalAlpha = 0.18;
            ctx.lineWidth = Math.max(2 * f.half_width_m * view.ppm, 3); ctx.stroke();
            ctx.globalAlpha = 0.8; ctx.lineWidth = 1.5; ctx.setLineDash([6, 4]); ctx.stroke(); ctx.setLineDash([]);
          }
          cx = pts.reduce((a, p) => a + p[0], 0) / pts.length;
          cy = pts.reduce((a, p) => a + p[1], 0) / pts.length;
        }
        ctx.globalAlpha = 1;
        if (label && view.ppm > 0.08 && cx > 0 && cy > 0 && cx < w && cy < h) labels.push([label, cx, cy, color]);
      }
      ctx.font = `12px ${FONT}`; ctx.textAlign = "center"; ctx.textBaseline = "middle";
      for (const [text, x, y, color] of labels) halo(text, x, y, color);
      ctx.textAlign = "start";
    }

    function drawRings(pins) {
      ctx.font = `11px ${FONT}`; ctx.textBaseline = "bottom"; ctx.textAlign = "center";
      for (const p of pins) {
        if (!p.rings || !p.rings.length) continue;
        const [x, y] = project(p.lat, p.lon);
        p.rings.forEach((ring, i) => {
          const r = ring.m * view.ppm;
          if (r < 3 || r > 6 * Math.max(w, h)) return;
          ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI);
          ctx.fillStyle = p.color; ctx.globalAlpha = 0.06 - i * 0.015; ctx.fill();
          ctx.globalAlpha = 0.85; ctx.strokeStyle = p.color; ctx.lineWidth = 1.5;
          ctx.setLineDash(i ? [8, 5] : []); ctx.stroke(); ctx.setLineDash([]);
          ctx.globalAlpha = 1;
          if (r > 24) halo(ring.label, x, y - r - 1, p.color);
        });
      }
      ctx.textAlign = "start";
    }

    function drawTrack(track) {
      if (!track || track.points.length < 2) return;
      const pts = track.points.map((p) => project(p.lat, p.lon));
      ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.strokeStyle = track.color;
      // Older segments fade out so the direction of travel is readable.
      for (let i = 1; i < pts.length; i++) {
        ctx.globalAlpha = 0.2 + 0.7 * (i / (pts.length - 1));
        ctx.lineWidth = 3.5;
        ctx.beginPath(); ctx.moveTo(pts[i - 1][0], pts[i - 1][1]); ctx.lineTo(pts[i][0], pts[i][1]); ctx.stroke();
      }
      ctx.globalAlpha = 1;
      const [sx, sy] = pts[0];
      ctx.fillStyle = "#fff"; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(sx, sy, 4, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
    }

    function drawMarker(m, x, y, selected, detail) {
      const r = selected ? 8 : m.status === "sos" ? 8 : 6;
      const accPx = (m.acc || 0) * view.ppm;
      if (detail && accPx >= 10 && accPx < 4 * Math.max(w, h)) {
        ctx.fillStyle = m.color; ctx.globalAlpha = 0.12;
        ctx.beginPath(); ctx.arc(x, y, accPx, 0, 2 * Math.PI); ctx.fill();
        ctx.globalAlpha = 0.45; ctx.strokeStyle = m.color; ctx.lineWidth = 1; ctx.stroke();
        ctx.globalAlpha = 1;
      }
      if (detail && m.course != null && (m.status === "moving" || m.status === "dispatched")) {   // heading pointer
        const a = (m.course - 90) * Math.PI / 180, d = r + (selected ? 12 : 7);
        ctx.fillStyle = m.color;
        ctx.beginPath();
        ctx.moveTo(x + Math.cos(a) * d, y + Math.sin(a) * d);
        ctx.lineTo(x + Math.cos(a + 2.4) * (r + 1), y + Math.sin(a + 2.4) * (r + 1));
        ctx.lineTo(x + Math.cos(a - 2.4) * (r + 1), y + Math.sin(a - 2.4) * (r + 1));
        ctx.fill();
      }
      if (selected) {
        ctx.strokeStyle = "#111827"; ctx.lineWidth = 2.5;
        ctx.beginPath(); ctx.arc(x, y, r + 5, 0, 2 * Math.PI); ctx.stroke();
      }
      ctx.fillStyle = m.color; ctx.strokeStyle = "#fff"; ctx.lineWidth = detail ? 2 : 1;
      ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
    }

    // A pin: a drop shape with a glyph (incident "!", clue "?", SOS); SOS pulses with time.
    function drawPin(p, x, y, selected) {
      if (p.pulse) {
        const phase = (performance.now() % 1200) / 1200;
        ctx.strokeStyle = p.color; ctx.globalAlpha = 1 - phase; ctx.lineWidth = 3;
        ctx.beginPath(); ctx.arc(x, y - 14, 12 + phase * 26, 0, 2 * Math.PI); ctx.stroke();
        ctx.globalAlpha = 1;
      }
      ctx.fillStyle = p.color; ctx.strokeStyle = selected ? "#111827" : "#fff"; ctx.lineWidth = selected ? 3 : 2;
      ctx.beginPath();
      ctx.moveTo(x, y);
      ctx.bezierCurveTo(x - 4, y - 8, x - 12, y - 12, x - 12, y - 20);
      ctx.arc(x, y - 20, 12, Math.PI, 0);
      ctx.bezierCurveTo(x + 12, y - 12, x + 4, y - 8, x, y);
      ctx.fill(); ctx.stroke();
      ctx.fillStyle = "#fff"; ctx.font = `700 ${p.glyph.length > 1 ? 9 : 14}px ${FONT}`;
      ctx.textAlign = "center"; ctx.textBaseline = "middle";
      ctx.fillText(p.glyph, x, y - 20);
      ctx.textAlign = "start";
    }

    function draw() {
      pending = false;
      if (wantFit && fitNow()) wantFit = false;
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.fillStyle = "#f3f5f8";
      ctx.fillRect(0, 0, w, h);
      drawGrid();
      const tiles = hooks.tiles();
      if (tiles) tiles.draw(ctx, view, w, h, project, unproject);
      drawFences(hooks.fences());
      const pins = hooks.pins();
      drawRings(pins);
      for (const tr of hooks.tracks()) drawTrack(tr);

      const sel = hooks.selected();
      const all = hooks.markers();
      hits = [];
      const visible = [];
      for (const m of all) {
        const [x, y] = project(m.lat, m.lon);
        if (x < -30 || y < -30 || x > w + 30 || y > h + 30) continue;
        visible.push([m, x, y]);
      }
      // Most important last, so it is drawn on top (and wins the labels below).
      visible.sort((a, b) => (a[0].id === sel) - (b[0].id === sel) || RANK[a[0].status] - RANK[b[0].status]);
      const detail = visible.length <= DETAIL_MARKERS;
      if (detail) {
        for (const [m, x, y] of visible) drawMarker(m, x, y, m.id === sel, true);
      } else {
        // Thousands in view: one path and one fill per colour (in rank order, so SOS stays on
        // top) instead of a fill and a stroke per marker, several times faster on a canvas.
        let i = 0;
        while (i < visible.length) {
          const color = visible[i][0].color;
          ctx.beginPath();
          for (; i < visible.length && visible[i][0].color === color; i++) {
            const [m, x, y] = visible[i];
            if (m.id === sel) continue;
            ctx.moveTo(x + 4, y); ctx.arc(x, y, 4, 0, 2 * Math.PI);
          }
          ctx.fillStyle = color; ctx.fill();
        }
        for (const [m, x, y] of visible) if (m.id === sel) drawMarker(m, x, y, true, true);
      }
      for (const [m, x, y] of visible) hits.push({ kind: "terminal", id: m.id, x, y });
      // Labels, most important first, skipping any that would overlap one already drawn.
      ctx.font = `600 12px ${FONT}`; ctx.textBaseline = "middle"; ctx.lineJoin = "round";
      if (visible.length <= MAX_LABELS) {
        const boxes = hits.map(({ x, y }) => [x - 7, y - 7, x + 7, y + 7]);   // labels never cover a marker
        for (let i = visible.length - 1; i >= 0; i--) {
          const [m, x, y] = visible[i], text = m.label || m.id;
          const tw = ctx.measureText(text).width, bx = x + 11, box = [bx - 2, y - 9, bx + tw + 2, y + 9];
          if (m.id !== sel && boxes.some((b) => box[0] < b[2] && box[2] > b[0] && box[1] < b[3] && box[3] > b[1])) continue;
          boxes.push(box);
          halo(text, bx, y, m.id === sel ? "#000" : "#1f2937");
        }
      }
      let pulsing = false;
      for (const p of pins) {
        const [x, y] = project(p.lat, p.lon);
        if (x < -40 || y < -10 || x > w + 40 || y > h + 50) continue;
        drawPin(p, x, y, p.selected);
        hits.push({ kind: p.kind, id: p.id, x, y: y - 20, r: 16 });
        pulsing = pulsing || !!p.pulse;
      }
      if (!all.length && !pins.length) {
        ctx.font = `15px ${FONT}`; ctx.fillStyle = "#4b5563"; ctx.textAlign = "center";
        ctx.fillText(hooks.emptyText(), w / 2, h / 2);
        ctx.textAlign = "start";
      }
      drawScale();
      hooks.drawn(visible.length);
      // Keep an SOS pulse moving while one is on screen, at ~15 frames a second (not every frame:
      // with thousands of terminals that would keep the CPU busy for a decoration).
      if (pulsing) setTimeout(requestDraw, 66);
    }

    // Pointer: drag pans; a click without movement places (when placing) or picks what is nearest.
    let drag = null;
    canvas.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      canvas.setPointerCapture(e.pointerId);
      drag = { x: e.offsetX, y: e.offsetY, moved: false };
    });
    canvas.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const dx = e.offsetX - drag.x, dy = e.offsetY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 4) return;
      drag.moved = true; canvas.classList.add("dragging");
      panBy(dx, dy);
      drag.x = e.offsetX; drag.y = e.offsetY;
    });
    const endDrag = (e) => {
      if (!drag) return;
      const click = !drag.moved;
      drag = null; canvas.classList.remove("dragging");
      if (!click || e.type !== "pointerup") return;
      if (hooks.placing()) {
        const [lat, lon] = unproject(e.offsetX, e.offsetY);
        hooks.place(lat, lon);
        return;
      }
      let best = null, bestD = Infinity;
      for (const p of hits) {   // later hits are drawn on top: prefer them on ties
        const d = Math.hypot(p.x - e.offsetX, p.y - e.offsetY);
        if (d <= (p.r || 16) && d <= bestD) { best = p; bestD = d; }
      }
      hooks.pick(best && { kind: best.kind, id: best.id });
    };
    canvas.addEventListener("pointerup", endDrag);
    canvas.addEventListener("pointercancel", endDrag);
    canvas.addEventListener("wheel", (e) => {
      e.preventDefault();
      const dy = e.deltaMode === 1 ? e.deltaY * 33 : e.deltaY;
      zoomAt(e.offsetX, e.offsetY, Math.exp(-clamp(dy, -300, 300) * 0.002));
    }, { passive: false });
    canvas.addEventListener("dblclick", (e) => zoomAt(e.offsetX, e.offsetY, 2));
    canvas.addEventListener("keydown", (e) => {
      const step = 80, keys = {
        ArrowLeft: () => panBy(step, 0), ArrowRight: () => panBy(-step, 0),
        ArrowUp: () => panBy(0, step), ArrowDown: () => panBy(0, -step),
        "+": () => zoomAt(w / 2, h / 2, 1.5), "=": () => zoomAt(w / 2, h / 2, 1.5), "-": () => zoomAt(w / 2, h / 2, 1 / 1.5),
      };
      if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
    });
    new ResizeObserver(resize).observe(canvas);
    resize();

    return {
      requestDraw,
      fit(points) { fitTo = points || null; wantFit = true; requestDraw(); },
      zoom(factor) { zoomAt(w / 2, h / 2, factor); },
      centerOn(lat, lon, minPpm) {
        view.lat = lat; view.lon = lon;
        if (minPpm && view.ppm < minPpm) view.ppm = minPpm;
        requestDraw();
      },
      // Where on the canvas a coordinate is drawn (for tests and overlays).
      toScreen: (lat, lon) => project(lat, lon),
      view,
    };
  }

  window.YJMap = { createMap };
})();
