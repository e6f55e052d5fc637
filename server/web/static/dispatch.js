"use strict";
// The dispatch panel: place a new incident on the map (or at the selected terminal), describe it,
// see the candidates in the 1/3/5-minute walking circles, dispatch the chosen ones, and follow
// each dispatch live ("incident" and "dispatch" events) until the incident is closed.
(function () {
  const YJ = window.YJ, { t, h } = YJ;
  const KINDS = ["fight", "theft", "medical", "fire", "traffic", "dispute", "search", "other"];
  const FINAL = new Set(["declined", "expired", "closed", "cancelled"]);
  const PRIORITY_COLORS = { 1: "#b91c1c", 2: "#ea580c", 3: "#ca8a04" };
  const pane = document.querySelector("#tab-dispatch");

  const incidents = YJ.collection("incident_id");
  const ui = {
    draft: null,            // {lat, lon} while a new incident is being described
    selected: null,         // incident_id shown in detail
    proposals: null,        // {incident_id, circles, loading, error}
    checked: new Set(),     // device ids ticked in the proposals
    busy: false,
    error: null,
    audit: null,            // {incident_id, open, steps|null}: the audit trail, read on demand
  };

  // Walking circles: radius = walk speed × minutes × 60 / detour (the server's own figures from
  // /api/v1/config, or its defaults when that call is not there).
  function rings(lat, lon) {
    const c = YJ.config, v = c.walk_speed_mps || 1.4, d = c.detour || 1.3;
    return (c.circles_min || [1, 3, 5]).map((k) => ({ m: (v * 60 * k) / d, label: t("dp.circle", { n: k }) }));
  }

  YJ.pins.push(() => {
    const out = [];
    for (const inc of incidents.items.values()) {
      if (inc.state !== "open" && inc.incident_id !== ui.selected) continue;
      const sel = inc.incident_id === ui.selected;
      let r = [];
      if (sel && ui.proposals && ui.proposals.incident_id === inc.incident_id && ui.proposals.circles) {
        r = ui.proposals.circles.map((c) => ({ m: c.radius_m, label: t("dp.circle", { n: c.minutes }) }));
      } else if (sel) r = rings(inc.lat, inc.lon);
      out.push({ kind: "incident", id: inc.incident_id, lat: inc.lat, lon: inc.lon, glyph: "!",
        color: inc.state === "open" ? PRIORITY_COLORS[inc.priority] || "#b91c1c" : "#6b7280", rings: r, selected: sel });
    }
    if (ui.draft && ui.draft.lat != null) {
      out.push({ kind: "draft", id: "draft", lat: ui.draft.lat, lon: ui.draft.lon, glyph: "+", color: "#1d4ed8",
        rings: rings(ui.draft.lat, ui.draft.lon) });
    }
    return out;
  });

  // ---- actions ----------------------------------------------------------------------------
  function startPlacing() {
    ui.draft = ui.draft || { lat: null, lon: null };
    YJ.placing = (lat, lon) => {
      ui.draft.lat = lat; ui.draft.lon = lon;
      stopPlacing();
      render();
    };
    YJ.showTab("dispatch");
    placeHint(true);
    render();
  }

  function stopPlacing() {
    YJ.placing = null;
    placeHint(false);
    YJ.redraw();
  }

  function placeHint(on) {
    const el = document.querySelector("#place-hint");
    el.hidden = !on;
    el.textContent = t("dp.placeHint");
    document.querySelector("#map").classList.toggle("placing", on);
  }

  function useSelected() {
    const term = YJ.selectedTerminal();
    if (!term || !term.fix) return;
    ui.draft = { lat: term.fix.lat, lon: term.fix.lon };
    stopPlacing();
    render();
  }

  function cancelDraft() {
    ui.draft = null;
    stopPlacing();
    render();
  }

  async function guarded(fn) {
    ui.busy = true; ui.error = null; render();
    try { await fn(); } catch (err) { ui.error = err.message; }
    ui.busy = false;
    render();
  }

  function createIncident(form) {
    const d = ui.draft;
    if (!d || d.lat == null) { ui.error = t("dp.needPlace"); render(); return; }
    const body = {
      kind: form.elements.kind.value,
      priority: Number(form.elements.priority.value),
      lat: +d.lat.toFixed(6), lon: +d.lon.toFixed(6),
      note: form.elements.note.value.trim(),
      auto_escalate: form.elements.auto.checked,
    };
    return guarded(async () => {
      const doc = await YJ.post("/api/v1/incidents", body);
      upsertIncident(doc);
      ui.draft = null;
      selectIncident(doc.incident_id);
    });
  }

  function selectIncident(id) {
    ui.selected = id;
    ui.checked.clear();
    ui.proposals = null;
    const inc = incidents.items.get(id);
    if (inc) {
      YJ.map.centerOn(inc.lat, inc.lon, 0.25);
      if (inc.state === "open" && YJ.canDispatch()) loadProposals();
    }
    YJ.showTab("dispatch");
    render();
  }

  async function loadProposals() {
    const id = ui.selected;
    ui.proposals = { incident_id: id, circles: null, loading: true, error: null };
    render();
    try {
      const body = await YJ.get(`/api/v1/incidents/${YJ.enc(id)}/proposals`);
      if (ui.selected !== id) return;
      ui.proposals = { incident_id: id, circles: body.circles || [], loading: false, error: null };
    } catch (err) {
      if (ui.selected !== id) return;
      ui.proposals = { incident_id: id, circles: null, loading: false, error: err.message };
    }
    render();
  }

  function dispatchChecked() {
    const id = ui.selected, devices = [...ui.checked];
    if (!devices.length) return;
    return guarded(async () => {
      const body = await YJ.post(`/api/v1/incidents/${YJ.enc(id)}/dispatches`, { device_ids: devices });
      for (const d of body.dispatches || []) upsertDispatch(d);
      ui.checked.clear();
      await loadProposals();
    });
  }

  const cancelDispatch = (did) => guarded(() => YJ.post(`/api/v1/dispatches/${YJ.enc(did)}/cancel`, { reason: "officer" })
    .then((doc) => doc && doc.dispatch_id && upsertDispatch(doc)));
  const closeIncident = (id) => guarded(() => YJ.post(`/api/v1/incidents/${YJ.enc(id)}/close`, {})
    .then((doc) => doc && doc.incident_id && upsertIncident(doc)));

  // How far a doc has got: its latest event time, then its state's rank (two steps in one
  // millisecond). An answer to a request and a live event can cross (the terminal's
  // "delivered" overtakes the POST's answer "sent"): the older never overwrites the newer.
  // ``expires_ms`` is a deadline, not something that happened.
  const RANK = { sent: 0, delivered: 1, accepted: 2, declined: 2, expired: 2, on_scene: 3, closed: 4, cancelled: 4, open: 0 };
  function progress(doc) {
    let ms = 0, rank = RANK[doc.state] || 0;
    for (const [k, v] of Object.entries(doc)) if (k.endsWith("_ms") && k !== "expires_ms" && typeof v === "number") ms = Math.max(ms, v);
    for (const d of doc.dispatches || []) {
      const [dm, dr] = progress(d);
      if (dm > ms) ms = dm;
      rank += dr;
    }
    return [ms, rank];
  }
  const newer = (a, b) => { const [am, ar] = progress(a), [bm, br] = progress(b); return am > bm || (am === bm && ar >= br); };

  function upsertIncident(doc) {
    const old = incidents.items.get(String(doc.incident_id));
    if (!old || newer(doc, old)) incidents.upsert(doc);
  }

  function upsertDispatch(d) {
    const inc = incidents.items.get(String(d.incident_id));
    if (!inc) return;
    const list = inc.dispatches || (inc.dispatches = []);
    const i = list.findIndex((x) => x.dispatch_id === d.dispatch_id);
    if (i < 0) list.push(d); else if (newer(d, list[i])) list[i] = d;
  }

  // ---- rendering --------------------------------------------------------------------------
  // The form is built once per draft and then only updated, so typing survives live events.
  function draftForm() {
    const d = ui.draft, term = YJ.selectedTerminal();
    if (!ui.form || ui.form.lang !== YJ.i18n.lang) {
      const old = ui.form && ui.form.el.elements;
      const form = h("form", { id: "incident-form", class: "card form", onsubmit(e) { e.preventDefault(); createIncident(form); } },
        h("h3", null, t("dp.newTitle")),
        h("p", { class: "where" }, t("dp.where"), " ", h("strong", { id: "draft-where" })),
        h("div", { class: "row-btns" },
          h("button", { type: "button", class: "btn btn-small", id: "draft-place", onclick: startPlacing }, t("dp.place")),
          h("button", { type: "button", class: "btn btn-small", id: "draft-use-selected", onclick: useSelected })),
        h("label", null, t("dp.kind"), h("select", { name: "kind", id: "draft-kind" },
          KINDS.map((k) => h("option", { value: k }, t("kind." + k))))),
        h("label", null, t("dp.priority"), h("select", { name: "priority", id: "draft-priority" },
          [1, 2, 3].map((p) => h("option", { value: p, selected: p === 2 }, t("prio." + p))))),
        h("label", null, t("dp.note"), h("textarea", { name: "note", id: "draft-note", rows: 2, maxlength: 500 })),
        h("label", { class: "check" }, h("input", { type: "checkbox", name: "auto", checked: true }), t("dp.autoEscalate")),
        h("div", { class: "row-btns" },
          h("button", { type: "submit", class: "btn btn-primary", id: "draft-submit" }, t("dp.create")),
          h("button", { type: "button", class: "btn", onclick: cancelDraft }, t("dp.cancel"))));
      if (old) {
        for (const name of ["kind", "priority", "note"]) form.elements[name].value = old[name].value;
        form.elements.auto.checked = old.auto.checked;
      }
      ui.form = { el: form, lang: YJ.i18n.lang };
    }
    const el = ui.form.el, use = el.querySelector("#draft-use-selected");
    el.querySelector("#draft-where").textContent = d.lat == null ? t("dp.noPlace") : `${d.lat.toFixed(5)}, ${d.lon.toFixed(5)}`;
    use.disabled = !(term && term.fix);
    use.textContent = term ? t("dp.useSelected", { id: term.device }) : t("dp.useSelectedNone");
    el.querySelector("#draft-submit").disabled = ui.busy || d.lat == null;
    return el;
  }

  function proposalsView(inc) {
    const p = ui.proposals;
    if (!YJ.canDispatch() || inc.state !== "open") return null;
    const box = h("div", { class: "proposals", id: "proposals" },
      h("div", { class: "sub-head" }, h("h4", null, t("dp.candidates")),
        h("button", { type: "button", class: "btn btn-small", onclick: loadProposals }, t("dp.refresh"))));
    if (!p || p.loading) { box.append(h("p", { class: "muted" }, t("dp.loading"))); return box; }
    if (p.error) { box.append(h("p", { class: "error" }, t("dp.error", { msg: p.error }))); return box; }
    let any = false;
    for (const c of p.circles) {
      box.append(h("h5", null, t("dp.ring", { n: c.minutes, r: YJ.distance(c.radius_m), k: c.candidates.length })));
      const ul = h("ul", { class: "cands" });
      for (const cand of c.candidates) {
        any = true;
        // A phone app cannot ring or answer (docs/phones.md): listed, to be called.
        const phone = cand.kind === "phone";
        const on = !phone && ui.checked.has(cand.device_id);
        ul.append(h("li", { dataset: { device: cand.device_id, kind: cand.kind || "" } },
          h("label", { title: phone ? t("dp.phoneCall") : null },
            h("input", { type: "checkbox", checked: on, disabled: phone, onchange(e) {
              if (e.target.checked) ui.checked.add(cand.device_id); else ui.checked.delete(cand.device_id);
              render();
            } }),
            h("span", { class: "who" }, cand.name || cand.volunteer_id || cand.device_id,
              h("small", null, phone ? `${cand.device_id} · ${t("dp.phoneCall")}` : cand.device_id)),
            h("span", { class: "num" }, YJ.distance(cand.distance_m)),
            h("span", { class: "num" }, t("dp.eta", { t: YJ.eta(cand.eta_s) })))));
      }
      if (!c.candidates.length) ul.append(h("li", { class: "muted" }, t("dp.noneInRing")));
      box.append(ul);
    }
    if (!any) box.append(h("p", { class: "muted" }, t("dp.noCandidates")));
    box.append(h("button", { type: "button", class: "btn btn-primary", id: "dispatch-send",
      disabled: ui.busy || !ui.checked.size, onclick: dispatchChecked }, t("dp.send", { n: ui.checked.size })));
    return box;
  }

  function dispatchesView(inc) {
    const list = (inc.dispatches || []).slice().sort((a, b) => a.sent_ms - b.sent_ms);
    const ul = h("ul", { class: "dispatches", id: "dispatches" });
    for (const d of list) {
      const when = d[d.state + "_ms"] || d.sent_ms;
      ul.append(h("li", { class: "dispatch", dataset: { dispatch: d.dispatch_id, device: d.device_id, state: d.state } },
        h("span", { class: "who" }, d.name || d.volunteer_id || d.device_id, h("small", null,
          `${d.device_id} · ${t("dp.circle", { n: d.circle })}${d.eta_s != null ? " · " + t("dp.eta", { t: YJ.eta(d.eta_s) }) : ""}`)),
        h("span", { class: "state-badge", dataset: { state: d.state } }, t("ds." + d.state)),
        h("span", { class: "muted when" }, YJ.clockTime(when)),
        YJ.canDispatch() && !FINAL.has(d.state)
          ? h("button", { type: "button", class: "btn btn-small act-cancel", onclick: () => cancelDispatch(d.dispatch_id) }, t("dp.cancelDispatch"))
          : null));
    }
    if (!list.length) ul.append(h("li", { class: "muted" }, t("dp.noDispatches")));
    return ul;
  }

  // Every step of the incident, as the server audited it (GET /api/v1/incidents/{id} "steps");
  // read when opened and again on each change while open.
  function auditView(inc) {
    const a = ui.audit && ui.audit.incident_id === inc.incident_id ? ui.audit : null;
    const details = h("details", { class: "audit", id: "incident-audit", open: a && a.open ? "" : null },
      h("summary", null, t("dp.audit")));
    details.addEventListener("toggle", () => {
      if (details.open && !(a && a.open)) loadAudit(inc.incident_id);
      else if (!details.open && ui.audit) ui.audit.open = false;
    });
    if (a && a.open) {
      if (!a.steps) details.append(h("p", { class: "muted" }, t("dp.auditLoading")));
      else if (!a.steps.length) details.append(h("p", { class: "muted" }, t("dp.auditEmpty")));
      else details.append(h("ol", { class: "audit-steps" }, a.steps.map((s) =>
        h("li", { dataset: { step: s.step } },
          h("span", { class: "muted when" }, YJ.clockTime(s.at_ms)),
          h("span", null, t("st." + s.step)),
          h("small", { class: "muted" }, [s.actor, s.detail].filter(Boolean).join(" · "))))));
    }
    return details;
  }

  async function loadAudit(id) {
    ui.audit = { incident_id: id, open: true, steps: (ui.audit && ui.audit.incident_id === id) ? ui.audit.steps : null };
    render();
    try {
      const doc = await YJ.get("/api/v1/incidents/" + encodeURIComponent(id));
      if (ui.audit && ui.audit.incident_id === id) { ui.audit.steps = doc.steps || []; render(); }
    } catch (err) { /* the next change tries again */ }
  }

  function incidentView(inc) {
    return h("div", { class: "card incident", id: "incident-view", dataset: { incident: inc.incident_id, state: inc.state } },
      h("div", { class: "sub-head" },
        h("h3", null, `${t("kind." + inc.kind)} · ${t("prio." + inc.priority)}`),
        h("span", { class: "state-badge", dataset: { state: inc.state } }, t("is." + inc.state)),
        h("button", { type: "button", class: "btn btn-small btn-icon", "aria-label": t("detail.close"),
          onclick: () => { ui.selected = null; ui.proposals = null; render(); YJ.redraw(); } }, "×")),
      h("p", { class: "muted" }, `${YJ.clockTime(inc.created_ms)} · ${inc.created_by || ""} · ${inc.lat.toFixed(5)}, ${inc.lon.toFixed(5)}`),
      inc.note ? h("p", { class: "note" }, inc.note) : null,
      h("h4", null, t("dp.dispatches")),
      dispatchesView(inc),
      proposalsView(inc),
      auditView(inc),
      YJ.canDispatch() && inc.state === "open"
        ? h("div", { class: "row-btns" }, h("button", { type: "button", class: "btn btn-danger", id: "incident-close",
          disabled: ui.busy, onclick: () => closeIncident(inc.incident_id) }, t("dp.close")))
        : null);
  }

  // Fixed slots: the form's slot is only touched when a draft starts or ends (focus stays put).
  const slots = {};
  for (const name of ["head", "error", "form", "view", "title", "list"]) pane.append(slots[name] = h("div", { class: "slot-" + name }));

  function render() {
    const open = [...incidents.items.values()].filter((x) => x.state === "open")
      .sort((a, b) => a.priority - b.priority || b.created_ms - a.created_ms);
    const badge = document.querySelector("#badge-incidents");
    badge.hidden = !open.length;
    badge.textContent = open.length;
    const inc = incidents.items.get(ui.selected);
    slots.head.replaceChildren(h("div", { class: "pane-head" }, h("h2", null, t("dp.title")),
      YJ.canDispatch() && !ui.draft
        ? h("button", { type: "button", class: "btn btn-primary", id: "new-incident", onclick: startPlacing }, t("dp.new"))
        : null));
    slots.error.replaceChildren(ui.error ? h("p", { class: "error", role: "alert" }, t("dp.error", { msg: ui.error })) : "");
    if (!ui.draft) { ui.form = null; slots.form.replaceChildren(); } else {
      const form = draftForm();
      if (form.parentNode !== slots.form) slots.form.replaceChildren(form);
    }
    slots.view.replaceChildren(inc ? incidentView(inc) : "");
    slots.title.replaceChildren(h("h3", { class: "list-title" }, t("dp.open", { n: open.length })));
    slots.list.replaceChildren(h("ul", { class: "incident-list", id: "incident-list" }, open.length ? open.map((x) =>
      h("li", { dataset: { incident: x.incident_id }, class: x.incident_id === ui.selected ? "selected" : null },
        h("button", { type: "button", class: "row", onclick: () => selectIncident(x.incident_id) },
          h("span", { class: "prio", dataset: { p: x.priority } }, x.priority),
          h("span", { class: "who" }, t("kind." + x.kind), h("small", null, x.note || "")),
          h("span", { class: "muted" }, `${summary(x)} · ${YJ.ago(x.created_ms)}`))))
      : h("li", { class: "muted" }, t("dp.noOpen"))));
    YJ.redraw();
  }

  function summary(inc) {
    const ds = inc.dispatches || [];
    const accepted = ds.filter((d) => d.state === "accepted" || d.state === "on_scene").length;
    return t("dp.summary", { a: accepted, n: ds.length });
  }

  async function reload() {
    try { await incidents.load("/api/v1/incidents?state=open", "incidents"); } catch (err) { /* older server */ }
    render();
  }

  YJ.on("hello", reload);
  YJ.on("lang", render);
  YJ.on("me", render);
  YJ.on("select", () => { if (ui.draft) render(); });
  YJ.on("pick:incident", selectIncident);
  YJ.on("event:incident", (doc) => {
    upsertIncident(doc);
    if (ui.audit && ui.audit.open && ui.audit.incident_id === doc.incident_id) loadAudit(doc.incident_id);
    if (doc.incident_id === ui.selected && doc.state === "open" && ui.proposals && !ui.busy) {
      // A dispatch ended or a terminal became engaged: the candidates changed with it.
      const before = JSON.stringify((doc.dispatches || []).map((d) => d.state));
      if (before !== ui.lastStates) { ui.lastStates = before; loadProposals(); }
    }
    render();
  });
  YJ.on("event:dispatch", (doc) => { upsertDispatch(doc); render(); });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && YJ.placing) { stopPlacing(); render(); }
  });
  setInterval(() => { if (!pane.hidden && !pane.contains(document.activeElement)) render(); }, 15000);
  render();
})();
