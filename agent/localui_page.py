"""The terminal's screen: one self-contained HTML page (no external assets: it works offline).

Served by ``agent.localui``, which fills in ``{token}`` (the per-run secret every API call must
carry in the ``X-Yijing-UI`` header) and ``{nonce}`` (the Content-Security-Policy nonce that
lets only this page's own inline script and style run). Bilingual: Chinese and English, with
a toggle; the choice is kept in localStorage. The page polls ``/api/state`` every second.

Test hooks: ``window.yijing.state`` (the last state), ``window.yijing.polls`` (how many answered).
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="yijing-ui-token" content="{token}">
<link rel="icon" href="data:,">
<title>义警终端 · Volunteer terminal</title>
<style nonce="{nonce}">
  * { box-sizing: border-box; }
  body { margin: 0; font: 18px/1.4 system-ui, "Noto Sans CJK SC", sans-serif;
         background: #111; color: #eee; }
  header { display: flex; align-items: center; gap: 12px; padding: 10px 14px;
           background: #1d2a3a; }
  header h1 { font-size: 20px; margin: 0; white-space: nowrap; }
  #link { flex: 1; min-width: 0; }
  #link[data-online="true"] { color: #6c6; } #link[data-online="false"] { color: #f96; }
  main { padding: 12px; display: grid; gap: 14px; max-width: 720px; margin: 0 auto; }
  section { background: #1c1c1c; border-radius: 12px; padding: 14px; }
  section h2 { margin: 0 0 8px; font-size: 20px; }
  button, .navlink { font: inherit; font-size: 22px; min-height: 64px; border-radius: 12px;
           border: 0; padding: 10px 18px; color: #fff; cursor: pointer;
           touch-action: manipulation; }
  .navlink { display: inline-flex; align-items: center; text-decoration: none;
             background: #2f5f9f; }
  .row { display: flex; gap: 10px; flex-wrap: wrap; margin-top: 10px; }
  .row > * { flex: 1 1 140px; }
  #dispatch { background: #5a1010; border: 3px solid #f33; }
  #dispatch.ringing { animation: pulse 1s infinite; }
  @keyframes pulse { 50% { border-color: #36f; } }
  #dispatch .kind { font-size: 28px; font-weight: bold; }
  #left { font-size: 24px; font-weight: bold; }
  #accept { background: #1a8a2a; } #decline { background: #666; }
  #arrived { background: #1a6a8a; }
  #notice { background: #4a3a00; }
  #tasks ul { list-style: none; margin: 0; padding: 0; display: grid; gap: 10px; }
  #tasks li { background: #262626; border-radius: 10px; padding: 10px; }
  #tasks li .title { font-weight: bold; font-size: 20px; }
  #tasks li button { background: #2f5f9f; margin-top: 8px; width: 100%; }
  #sos { background: #b00; width: 100%; font-size: 30px; min-height: 96px; font-weight: bold; }
  #sos.armed { background: #f30; outline: 6px solid #ff0; }
  #sos:disabled { background: #733; }
  textarea, select, input[type=file] { font: inherit; width: 100%; margin-top: 6px;
           background: #262626; color: #eee; border: 1px solid #444; border-radius: 8px;
           padding: 10px; }
  textarea { min-height: 96px; }
  #clue-send { background: #2f5f9f; width: 100%; margin-top: 10px; }
  .muted { color: #aaa; font-size: 15px; }
  .error { color: #f96; }
  [hidden] { display: none !important; }
  #lang { background: #2f5f9f; font-size: 16px; min-height: 44px; white-space: nowrap; }
</style>
</head>
<body>
<header>
  <h1 data-t="title">义警终端</h1>
  <span id="link" class="muted" data-online="false"></span>
  <button id="lang" type="button">English</button>
</header>
<main>
  <p id="problem" class="error" hidden></p>
  <p id="error" class="error" hidden></p>
  <section id="dispatch" hidden>
    <h2 data-t="dispatch">出警指令</h2>
    <div class="kind" id="d-kind"></div>
    <div id="d-priority"></div>
    <div id="d-note"></div>
    <div id="d-where"></div>
    <div><span data-t="left">剩余时间</span> <span id="left"></span></div>
    <div class="row">
      <button id="accept" type="button" data-t="accept">接受</button>
      <button id="decline" type="button" data-t="decline">拒绝</button>
    </div>
    <div class="row"><a id="d-nav" class="navlink" data-t="navigate">导航</a></div>
  </section>
  <section id="current" hidden>
    <h2 data-t="current">已接警，前往现场</h2>
    <div class="kind" id="c-kind"></div>
    <div id="c-note"></div>
    <div id="c-where"></div>
    <div class="row">
      <button id="arrived" type="button" data-t="arrived">已到达现场</button>
      <a id="c-nav" class="navlink" data-t="navigate">导航</a>
    </div>
    <div id="c-onscene" data-t="onscene" hidden>已报到达</div>
  </section>
  <section id="notice" hidden>
    <span data-t="cancelled">指令已取消</span> <span id="n-reason"></span>
  </section>
  <section id="tasks">
    <h2 data-t="tasks">任务</h2>
    <p id="no-tasks" class="muted" data-t="notasks">暂无任务</p>
    <ul></ul>
  </section>
  <section>
    <button id="sos" type="button" data-t="sos">SOS 求助</button>
    <p id="sos-status" class="muted"></p>
  </section>
  <section id="clue">
    <h2 data-t="clue">线索举报</h2>
    <form id="clue-form">
      <label><span data-t="cluetext">描述</span>
        <textarea id="clue-text" maxlength="1000" required></textarea></label>
      <label><span data-t="category">类别</span> <select id="clue-category"></select></label>
      <label><span data-t="photo">照片（可选）</span>
        <input id="clue-photo" type="file" accept="image/*" capture="environment"></label>
      <button id="clue-send" type="submit" data-t="send">提交线索</button>
    </form>
    <p id="clue-status" class="muted"></p>
  </section>
</main>
<script nonce="{nonce}">
"use strict";
(function () {
  const TOKEN = document.querySelector('meta[name="yijing-ui-token"]').content;
  const MAX_PHOTO = 500 * 1024;  // under the protocol's 512 KiB, with room to spare
  const T = {
    zh: {
      title: "义警终端", dispatch: "出警指令", left: "剩余时间", accept: "接受", decline: "拒绝",
      navigate: "导航", current: "已接警，前往现场", arrived: "已到达现场", onscene: "已报到达",
      cancelled: "指令已取消", tasks: "任务", notasks: "暂无任务", read: "已读",
      sos: "SOS 求助", sosarm: "再按一次发送求助", sossent: "求助已发送", clue: "线索举报",
      cluetext: "描述", category: "类别", photo: "照片（可选）", send: "提交线索",
      cluesent: "线索已提交", online: "在线", offline: "离线（消息会保存并稍后发送）",
      noanswer: "终端程序无响应", reload: "页面已过期，请刷新", nofix: "暂无定位",
      expired: "已过期", priority: ["", "紧急", "一般", "较低"], until: "截止",
      kinds: { fight: "斗殴", theft: "盗窃", medical: "医疗急救", fire: "火情", traffic: "交通",
               dispute: "纠纷", search: "寻人搜索", other: "其他" },
      dirs: ["北", "东北", "东", "东南", "南", "西南", "西", "西北"],
      away: (m, d) => d + " " + m, shrinking: "正在压缩照片…", lang: "English",
    },
    en: {
      title: "Volunteer terminal", dispatch: "Dispatch", left: "Time left", accept: "Accept",
      decline: "Decline", navigate: "Navigate", current: "Accepted: go to the scene",
      arrived: "Arrived on scene", onscene: "Arrival reported", cancelled: "Dispatch cancelled",
      tasks: "Tasks", notasks: "No tasks", read: "Read", sos: "SOS",
      sosarm: "Tap again to send SOS",
      sossent: "SOS sent", clue: "Report a clue", cluetext: "What did you see?",
      category: "Category", photo: "Photo (optional)", send: "Send clue", cluesent: "Clue sent",
      online: "online", offline: "offline (kept, sent later)",
      noanswer: "The agent is not answering",
      reload: "This page is out of date: reload it", nofix: "no position yet",
      expired: "expired", priority: ["", "urgent", "normal", "low"], until: "until",
      kinds: { fight: "Fight", theft: "Theft", medical: "Medical", fire: "Fire",
               traffic: "Traffic", dispute: "Dispute", search: "Search", other: "Other" },
      dirs: ["N", "NE", "E", "SE", "S", "SW", "W", "NW"],
      away: (m, d) => m + " " + d, shrinking: "Shrinking the photo…", lang: "中文",
    },
  };
  const stored = localStorage.getItem("yijing-lang");
  let lang = stored || ((navigator.language || "zh").startsWith("zh") ? "zh" : "en");
  const $ = (s) => document.querySelector(s);
  const y = window.yijing = { state: null, polls: 0, fetchedAt: 0 };

  function t(key) { return T[lang][key]; }
  function applyLang() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.querySelectorAll("[data-t]").forEach((e) => { e.textContent = t(e.dataset.t); });
    $("#lang").textContent = t("lang");
    const sel = $("#clue-category"), was = sel.value || "other";
    sel.textContent = "";
    for (const [k, v] of Object.entries(t("kinds"))) {
      const o = document.createElement("option");
      o.value = k; o.textContent = v; sel.appendChild(o);
    }
    sel.value = was;
    if (y.state) render(y.state);
  }
  $("#lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("yijing-lang", lang);
    applyLang();
  });

  async function api(method, path, body) {
    const opts = { method, headers: { "X-Yijing-UI": TOKEN } };
    if (body instanceof FormData) opts.body = body;
    else if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body);
    }
    const r = await fetch(path, opts);
    let doc = {};
    try { doc = await r.json(); } catch (e) { /* an empty or non-JSON answer */ }
    if (r.status === 403) problem(t("reload"));
    if (!r.ok) throw new Error(doc.error || ("HTTP " + r.status));
    return doc;
  }
  function problem(text) { const p = $("#problem"); p.textContent = text || ""; p.hidden = !text; }

  function metres(m) { return m < 1000 ? Math.round(m) + " m" : (m / 1000).toFixed(1) + " km"; }
  function where(d) {
    if (d.distance_m === null) return t("nofix");
    const dir = t("dirs")[Math.round(d.bearing_deg / 45) % 8];
    return t("away")(metres(d.distance_m), dir);
  }
  function left(ms) {
    if (ms <= 0) return t("expired");
    const s = Math.floor(ms / 1000);
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }
  function nowMs() { return y.state.now_ms + (Date.now() - y.fetchedAt); }

  let rung = null;
  function ring(id) {
    if (rung === id) return;
    rung = id;
    if (navigator.vibrate) navigator.vibrate([600, 200, 600, 200, 600]);
    try {
      const ctx = new AudioContext(), o = ctx.createOscillator();
      o.frequency.value = 880; o.connect(ctx.destination); o.start(); o.stop(ctx.currentTime + 0.6);
    } catch (e) { /* no sound before the first touch: the light and vibration still ring */ }
  }

  function render(s) {
    $("#link").dataset.online = String(s.online);
    $("#link").textContent = s.device_id + " · " + t(s.online ? "online" : "offline");
    const d = s.ringing, box = $("#dispatch");
    box.hidden = !d;
    box.classList.toggle("ringing", !!d);
    if (d) {
      box.dataset.id = d.dispatch_id;
      $("#d-kind").textContent = t("kinds")[d.kind] || d.kind;
      $("#d-priority").textContent = t("priority")[d.priority] || "";
      $("#d-note").textContent = d.note;
      $("#d-where").textContent = where(d);
      $("#d-nav").href = d.geo;
      $("#left").textContent = left(d.expires_ms - nowMs());
      ring(d.dispatch_id);
    }
    const c = s.current, cur = $("#current");
    cur.hidden = !c;
    if (c) {
      cur.dataset.id = c.dispatch_id;
      $("#c-kind").textContent = t("kinds")[c.kind] || c.kind;
      $("#c-note").textContent = c.note;
      $("#c-where").textContent = where(c);
      $("#c-nav").href = c.geo;
      $("#arrived").hidden = c.on_scene_ms !== null;
      $("#c-onscene").hidden = c.on_scene_ms === null;
    }
    $("#notice").hidden = !s.notice;
    if (s.notice) $("#n-reason").textContent = s.notice.reason;
    renderTasks(s.tasks);
  }

  function renderTasks(tasks) {
    const ul = $("#tasks ul");
    $("#no-tasks").hidden = tasks.length > 0;
    ul.textContent = "";
    for (const k of tasks) {
      const li = document.createElement("li");
      li.dataset.task = k.task_id;
      const title = document.createElement("div");
      title.className = "title";
      title.textContent = (k.priority === 1 ? "❗ " : "") + k.title;
      const text = document.createElement("div"); text.textContent = k.text;
      const until = document.createElement("div"); until.className = "muted";
      until.textContent = t("until") + " " + new Date(k.expires_ms).toLocaleTimeString(
        lang === "zh" ? "zh-CN" : "en");
      const b = document.createElement("button");
      b.type = "button"; b.className = "read"; b.textContent = t("read");
      const ack = "/api/tasks/" + encodeURIComponent(k.task_id) + "/ack";
      b.addEventListener("click", () => act("POST", ack));
      li.append(title, text, until, b);
      if (k.lat !== null) {
        const a = document.createElement("a");
        a.className = "navlink"; a.href = k.geo; a.textContent = t("navigate");
        li.appendChild(a);
      }
      ul.appendChild(li);
    }
  }

  function failed(text) { const p = $("#error"); p.textContent = text || ""; p.hidden = !text; }
  async function act(method, path, body) {
    try { await api(method, path, body); failed(""); } catch (e) { failed(e.message); }
    poll();
  }
  $("#accept").addEventListener("click", () =>
    act("POST", "/api/dispatch/accept", { dispatch_id: $("#dispatch").dataset.id }));
  $("#decline").addEventListener("click", () =>
    act("POST", "/api/dispatch/decline", { dispatch_id: $("#dispatch").dataset.id }));
  $("#arrived").addEventListener("click", () =>
    act("POST", "/api/dispatch/arrived", { dispatch_id: $("#current").dataset.id }));

  // SOS: a second tap within 4 s sends it, so a pocket press never raises an alarm alone.
  let armed = null;
  $("#sos").addEventListener("click", async () => {
    const b = $("#sos");
    if (!armed) {
      b.classList.add("armed"); b.textContent = t("sosarm");
      armed = setTimeout(() => {
        armed = null; b.classList.remove("armed"); b.textContent = t("sos");
      }, 4000);
      return;
    }
    clearTimeout(armed); armed = null;
    b.classList.remove("armed"); b.textContent = t("sos");
    try {
      await api("POST", "/api/sos", { confirmed: true });
      $("#sos-status").textContent = t("sossent") + " " + new Date().toLocaleTimeString();
    } catch (e) { $("#sos-status").textContent = e.message; }
  });

  // A phone's photo is megabytes: shrink it to a JPEG under the limit before sending.
  async function shrink(file) {
    if (file.type === "image/jpeg" && file.size <= MAX_PHOTO) return file;
    $("#clue-status").textContent = t("shrinking");
    const img = await createImageBitmap(file);
    let side = 1600, quality = 0.85;
    for (let i = 0; i < 8; i++) {
      const k = Math.min(1, side / Math.max(img.width, img.height));
      const c = document.createElement("canvas");
      c.width = Math.max(1, Math.round(img.width * k));
      c.height = Math.max(1, Math.round(img.height * k));
      c.getContext("2d").drawImage(img, 0, 0, c.width, c.height);
      const blob = await new Promise((ok) => c.toBlob(ok, "image/jpeg", quality));
      if (blob && blob.size <= MAX_PHOTO) return blob;
      side = Math.round(side * 0.75); quality = Math.max(0.5, quality - 0.1);
    }
    throw new Error("photo: too large even when shrunk");
  }
  $("#clue-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const status = $("#clue-status"), send = $("#clue-send");
    send.disabled = true;
    try {
      const form = new FormData();
      form.append("text", $("#clue-text").value);
      form.append("category", $("#clue-category").value);
      const file = $("#clue-photo").files[0];
      if (file) form.append("photo", await shrink(file), "clue.jpg");
      const doc = await api("POST", "/api/clues", form);
      status.textContent = t("cluesent") + " (" + doc.clue_id + ")";
      status.dataset.clue = doc.clue_id;
      $("#clue-form").reset();
      $("#clue-category").value = "other";
    } catch (e) { status.textContent = e.message; }
    send.disabled = false;
  });

  async function poll() {
    try {
      const s = await api("GET", "/api/state");
      y.fetchedAt = Date.now(); y.state = s; y.polls += 1;
      problem("");
      render(s);
    } catch (e) { problem(t("noanswer") + ": " + e.message); }
  }
  applyLang();
  poll();
  setInterval(poll, 1000);
})();
</script>
</body>
</html>
"""


def render_page(token: str, nonce: str) -> str:
    """The page with this run's API token and this response's CSP nonce."""
    # str.replace, not str.format: the page is full of CSS and JS braces.
    return PAGE.replace("{token}", token).replace("{nonce}", nonce)
