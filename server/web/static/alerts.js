"use strict";
// SOS alerts and clues. An open alert is a red banner above the map (who, when, where, the latest
// picture), a pulsing pin with the volunteer's recent trail, and a beep repeated until someone
// acknowledges it. Browsers allow sound only after a gesture on the page, hence the toggle in
// the top bar; without WebAudio the page works silently. Clues reported from the field are a
// list with their photos, pins on the map and a "handled" button.
(function () {
  const YJ = window.YJ, { t, h } = YJ;
  const TRAIL_BEFORE_MS = 10 * 60 * 1000, BEEP_EVERY_MS = 1500;
  const banner = document.querySelector("#alerts"), cluePane = document.querySelector("#tab-clues");
  const soundBtn = document.querySelector("#sound");

  const alerts = YJ.collection("alert_id");
  const clues = YJ.collection((c) => (c.device_id == null || c.clue_id == null ? null : `${c.device_id}:${c.clue_id}`));
  const trails = new Map();   // alert_id -> points
  const seen = new Map();     // alert_id -> count last seen (a new or repeated SOS recentres)
  const ui = { busy: new Set(), error: null, clue: null };

  const openAlerts = () => [...alerts.items.values()].filter((a) => a.state === "open")
    .sort((a, b) => b.raised_ms - a.raised_ms);
  const newClues = () => [...clues.items.values()].filter((c) => c.state === "new")
    .sort((a, b) => b.time_ms - a.time_ms);

  // Where an alert is: the terminal's live fix if newer than the one the SOS carried.
  function whereOf(a) {
    const term = YJ.terminal(a.device_id), live = term && term.fix, f = a.fix;
    if (live && (!f || live.time_ms > f.time_ms)) return live;
    return f || null;
  }

  YJ.pins.push(() => {
    const out = [];
    for (const c of newClues()) {
      if (c.lat == null || c.lon == null) continue;
      const id = `${c.device_id}:${c.clue_id}`;
      out.push({ kind: "clue", id, lat: c.lat, lon: c.lon, glyph: "?", color: "#0d9488", selected: id === ui.clue });
    }
    for (const a of openAlerts()) {
      const f = whereOf(a);
      if (f) out.push({ kind: "alert", id: a.alert_id, lat: f.lat, lon: f.lon, glyph: "SOS", color: "#dc2626", pulse: true });
    }
    return out;
  });
  YJ.tracks.push(() => openAlerts().filter((a) => trails.has(a.alert_id))
    .map((a) => ({ color: "#dc2626", points: trails.get(a.alert_id) })));

  // ---- sound ------------------------------------------------------------------------------
  const sound = { ctx: null, on: false };

  function toggleSound() {
    if (!sound.on) {
      try {
        const AC = window.AudioContext || window.webkitAudioContext;
        sound.ctx = sound.ctx || (AC ? new AC() : null);
        if (sound.ctx && sound.ctx.state === "suspended") sound.ctx.resume();
      } catch (e) { sound.ctx = null; }
      sound.on = !!sound.ctx;
      if (sound.on) beep();   // the officer hears at once what an alert sounds like
    } else {
      sound.on = false;
    }
    renderSound();
  }

  function beep() {
    const ac = sound.ctx;
    if (!ac) return;
    try {
      const now = ac.currentTime;
      for (const [i, freq] of [[0, 880], [1, 660], [2, 880]]) {
        const osc = ac.createOscillator(), gain = ac.createGain();
        osc.type = "square"; osc.frequency.value = freq;
        gain.gain.setValueAtTime(0.0001, now + i * 0.18);
        gain.gain.exponentialRampToValueAtTime(0.2, now + i * 0.18 + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.18 + 0.16);
        osc.connect(gain).connect(ac.destination);
        osc.start(now + i * 0.18); osc.stop(now + i * 0.18 + 0.17);
      }
    } catch (e) { /* audio device gone: stay silent, the banner still shows */ }
  }

  function renderSound() {
    soundBtn.setAttribute("aria-pressed", String(sound.on));
    soundBtn.querySelector(".sound-text").textContent = sound.on ? t("sound.on") : t("sound.off");
    soundBtn.title = sound.on ? t("sound.onTip") : t("sound.offTip");
    soundBtn.classList.toggle("attention", !sound.on && openAlerts().length > 0);
  }

  setInterval(() => { if (sound.on && openAlerts().length) beep(); }, BEEP_EVERY_MS);

  // ---- alerts -----------------------------------------------------------------------------
  async function fetchTrail(a) {
    try {
      const since = Math.max(0, a.raised_ms - TRAIL_BEFORE_MS);
      const body = await YJ.get(`/api/v1/terminals/${YJ.enc(a.device_id)}/track?since_ms=${since}&limit=2000`);
      trails.set(a.alert_id, body.points || []);
      YJ.redraw();
    } catch (err) { /* the pin and the banner still show where */ }
  }

  function locate(a) {
    const f = whereOf(a);
    if (f) YJ.map.centerOn(f.lat, f.lon, 0.3);
    if (YJ.terminal(a.device_id)) YJ.select(a.device_id, false);   // details: trail and pictures
  }

  async function ack(a) {
    ui.busy.add(a.alert_id); render();
    try {
      const doc = await YJ.post(`/api/v1/alerts/${YJ.enc(a.alert_id)}/ack`, {});
      if (doc && doc.alert_id) alerts.upsert(doc);
      else alerts.upsert({ ...a, state: "acked" });
      ui.error = null;
    } catch (err) {
      ui.error = t("alert.ackFailed", { msg: err.message });
    }
    ui.busy.delete(a.alert_id);
    render();
  }

  function onAlert(a, live) {
    const before = seen.get(a.alert_id);
    seen.set(a.alert_id, a.count);
    if (a.state !== "open") { trails.delete(a.alert_id); return; }
    fetchTrail(a);
    if (live && before !== a.count) {   // a new SOS, or the same volunteer pressing again
      locate(a);
      if (sound.on) beep();
    }
  }

  function alertCard(a) {
    const f = whereOf(a), snap = a.snapshot || (YJ.terminal(a.device_id) || {}).snapshot;
    const name = a.name || a.volunteer_id || a.device_id;
    return h("div", { class: "alert-card", dataset: { alert: a.alert_id, device: a.device_id } },
      h("span", { class: "sos-tag" }, "SOS"),
      snap ? h("img", { class: "thumb", src: snap.url, alt: t("detail.snapshotAlt", { id: a.device_id }) }) : null,
      h("div", { class: "alert-text" },
        h("strong", null, t("alert.who", { name, id: a.device_id })),
        h("span", null, [
          t("alert.when", { time: YJ.clockTime(a.raised_ms), ago: YJ.ago(a.raised_ms) }),
          a.count > 1 ? t("alert.count", { n: a.count }) : null,
          a.unit_id ? YJ.unitName(a.unit_id) : null,
          f ? `${f.lat.toFixed(5)}, ${f.lon.toFixed(5)}` : t("alert.noFix"),
        ].filter(Boolean).join(" · "))),
      h("button", { type: "button", class: "btn btn-small act-locate", disabled: !f, onclick: () => locate(a) }, t("alert.locate")),
      YJ.canDispatch()
        ? h("button", { type: "button", class: "btn btn-small btn-ack", disabled: ui.busy.has(a.alert_id), onclick: () => ack(a) }, t("alert.ack"))
        : null);
  }

  function renderAlerts() {
    const list = openAlerts();
    banner.hidden = !list.length && !ui.error;
    banner.replaceChildren(...list.map(alertCard), ui.error ? h("p", { class: "error" }, ui.error) : "");
    renderSound();
  }

  // ---- clues ------------------------------------------------------------------------------
  async function handle(c) {
    const id = `${c.device_id}:${c.clue_id}`;
    ui.busy.add(id); render();
    try {
      const doc = await YJ.post(`/api/v1/clues/${YJ.enc(id)}/handle`, {});
      clues.upsert(doc && doc.clue_id ? doc : { ...c, state: "handled" });
    } catch (err) {
      YJ.toast(err);
    }
    ui.busy.delete(id);
    render();
  }

  function clueItem(c) {
    const id = `${c.device_id}:${c.clue_id}`;
    return h("li", { class: "clue" + (id === ui.clue ? " selected" : ""), dataset: { clue: id } },
      c.photo_url ? h("a", { href: c.photo_url, target: "_blank", rel: "noopener" },
        h("img", { class: "thumb", src: c.photo_url, alt: t("clue.photo"), loading: "lazy" }))
        : h("span", { class: "thumb none" }, t("clue.noPhoto")),
      h("div", { class: "clue-text" },
        h("strong", null, `${t("kind." + c.category)} · ${c.name || c.volunteer_id || c.device_id}`),
        h("p", null, c.text),
        h("small", { class: "muted" }, `${YJ.clockTime(c.time_ms)} · ${YJ.ago(c.time_ms)}`)),
      h("div", { class: "col-btns" },
        h("button", { type: "button", class: "btn btn-small", disabled: c.lat == null,
          onclick: () => { ui.clue = id; YJ.map.centerOn(c.lat, c.lon, 0.3); render(); } }, t("alert.locate")),
        YJ.canDispatch()
          ? h("button", { type: "button", class: "btn btn-small btn-primary act-handle", disabled: ui.busy.has(id),
            onclick: () => handle(c) }, t("clue.handle"))
          : null));
  }

  function renderClues() {
    const list = newClues(), badge = document.querySelector("#badge-clues");
    badge.hidden = !list.length;
    badge.textContent = list.length;
    cluePane.replaceChildren(
      h("div", { class: "pane-head" }, h("h2", null, t("clue.title", { n: list.length }))),
      h("ul", { class: "clue-list", id: "clue-list" }, list.length ? list.map(clueItem) : h("li", { class: "muted" }, t("clue.none"))));
  }

  function render() {
    renderAlerts();
    renderClues();
    YJ.redraw();
  }

  async function reload() {
    try {
      await alerts.load("/api/v1/alerts?state=open", "alerts");
      for (const a of alerts.items.values()) onAlert(a, false);
    } catch (err) { /* an older server: alerts still arrive as events */ }
    try { await clues.load("/api/v1/clues?state=new", "clues"); } catch (err) { /* as above */ }
    render();
  }

  soundBtn.addEventListener("click", toggleSound);
  YJ.on("hello", reload);
  YJ.on("lang", render);
  YJ.on("me", render);
  YJ.on("event:alert", (a) => { alerts.upsert(a); onAlert(a, true); render(); });
  YJ.on("event:clue", (c) => { clues.upsert(c); render(); });
  YJ.on("pick:alert", (id) => { const a = alerts.items.get(id); if (a) locate(a); });
  YJ.on("pick:clue", (id) => { ui.clue = id; YJ.showTab("clues"); render(); });
  setInterval(() => { if (openAlerts().length) renderAlerts(); }, 10000);   // "N min ago"
  render();
})();
