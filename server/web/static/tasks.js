"use strict";
// Tasks (任务发布): a short form that sends a task to every terminal of a unit, or to everyone on
// duty at posts of one kind, and the list of tasks with how many terminals have read each one
// (acked / total, live from "task" events).
(function () {
  const YJ = window.YJ, { t, h } = YJ;
  const POST_KINDS = ["duty_point", "patrol_segment", "guard_and_patrol", "internal_prevention",
    "key_prevention_area", "strict_order_area", "neighbourhood_watch"];
  const pane = document.querySelector("#tab-tasks");
  const tasks = YJ.collection("task_id");
  const ui = { form: null, busy: false, error: null, sent: null };

  function targetOptions(kind) {
    if (kind === "post_kind") return POST_KINDS.map((k) => h("option", { value: k }, t("pk." + k)));
    const units = [...YJ.units.values()].sort((a, b) => a.unit_id.localeCompare(b.unit_id));
    return units.map((u) => h("option", { value: u.unit_id }, `${u.name} (${t("level." + u.level)})`));
  }

  // Built once (per language) and kept, so a live event never wipes what is being typed.
  function form() {
    if (ui.form && ui.form.lang === YJ.i18n.lang) return ui.form.el;
    const old = ui.form && ui.form.el.elements;
    const el = h("form", { class: "card form", id: "task-form", onsubmit(e) { e.preventDefault(); publish(el); } },
      h("h3", null, t("tk.new")),
      h("label", null, t("tk.titleField"), h("input", { name: "title", id: "task-title", required: true, maxlength: 100 })),
      h("label", null, t("tk.text"), h("textarea", { name: "text", id: "task-text", rows: 2, maxlength: 1000 })),
      h("div", { class: "grid2" },
        h("label", null, t("tk.targetKind"), h("select", { name: "target_kind", id: "task-target-kind", onchange() {
          el.elements.target.replaceChildren(...targetOptions(this.value));
        } }, h("option", { value: "unit" }, t("tk.byUnit")), h("option", { value: "post_kind" }, t("tk.byPostKind")))),
        h("label", null, t("tk.target"), h("select", { name: "target", id: "task-target" })),
        h("label", null, t("dp.priority"), h("select", { name: "priority" },
          [1, 2, 3].map((p) => h("option", { value: p, selected: p === 2 }, t("prio." + p))))),
        h("label", null, t("tk.ttl"), h("input", { name: "ttl", type: "number", min: 1, max: 1440, value: 60 }))),
      h("div", { class: "row-btns" }, h("button", { type: "submit", class: "btn btn-primary", id: "task-send" }, t("tk.send"))));
    if (old) {
      for (const name of ["title", "text", "target_kind", "priority", "ttl"]) el.elements[name].value = old[name].value;
    }
    el.elements.target.replaceChildren(...targetOptions(el.elements.target_kind.value));
    if (old) el.elements.target.value = old.target.value;
    ui.form = { el, lang: YJ.i18n.lang };
    return el;
  }

  async function publish(el) {
    const f = el.elements;
    const body = {
      title: f.title.value.trim(), text: f.text.value.trim(), priority: Number(f.priority.value),
      target_kind: f.target_kind.value, target: f.target.value, ttl_s: Math.round(Number(f.ttl.value) * 60),
    };
    if (!body.title || !body.target) { ui.error = t("tk.missing"); render(); return; }
    ui.busy = true; ui.error = null; render();
    try {
      const doc = await YJ.post("/api/v1/tasks", body);
      tasks.upsert(doc);
      ui.sent = t("tk.sent", { n: doc.total ?? 0 });
      f.title.value = ""; f.text.value = "";
    } catch (err) {
      ui.error = err.message;
    }
    ui.busy = false;
    render();
  }

  function targetLabel(task) {
    if (task.target_kind === "post_kind") return t("pk." + task.target);
    return YJ.unitName(task.target);
  }

  function render() {
    const list = [...tasks.items.values()].sort((a, b) => b.created_ms - a.created_ms).slice(0, 50);
    const now = YJ.serverNow();
    const el = YJ.canDispatch() ? form() : null;
    if (el) el.querySelector("#task-send").disabled = ui.busy;
    const keep = el && el.parentNode === pane ? el : null;
    // Everything but the form is rebuilt; the form node is kept in place (focus, typing).
    for (const child of [...pane.children]) if (child !== keep) child.remove();
    const head = h("div", { class: "pane-head" }, h("h2", null, t("tk.title")));
    pane.prepend(head);
    if (el && !keep) head.after(el);
    pane.append(
      ui.error ? h("p", { class: "error", role: "alert" }, t("dp.error", { msg: ui.error })) : "",
      ui.sent && !ui.error ? h("p", { class: "ok", role: "status" }, ui.sent) : "",
      h("h3", { class: "list-title" }, t("tk.list")),
      h("ul", { class: "task-list", id: "task-list" }, list.length ? list.map((task) =>
        h("li", { dataset: { task: task.task_id }, class: task.expires_ms < now ? "expired" : null },
          h("div", { class: "who" }, h("strong", null, task.title),
            h("small", null, `${targetLabel(task)} · ${YJ.clockTime(task.created_ms)}` +
              (task.expires_ms < now ? ` · ${t("tk.expired")}` : ""))),
          h("span", { class: "acked", title: t("tk.ackedTip") }, `${task.acked ?? 0} / ${task.total ?? 0}`)))
        : h("li", { class: "muted" }, t("tk.none"))));
  }

  async function reload() {
    try { await tasks.load("/api/v1/tasks", "tasks"); } catch (err) { /* an older server */ }
    render();
  }

  YJ.on("hello", reload);
  YJ.on("lang", render);
  YJ.on("me", render);
  YJ.on("units", () => {
    const f = ui.form && ui.form.el.elements;
    if (f && f.target_kind.value === "unit") {
      const keep = f.target.value;
      f.target.replaceChildren(...targetOptions("unit"));
      if (keep) f.target.value = keep;
    }
  });
  YJ.on("event:task", (doc) => { tasks.upsert(doc); render(); });
  render();
})();
