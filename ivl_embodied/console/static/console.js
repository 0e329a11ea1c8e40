// The operator console: one websocket to the console node; JSON events in, commands out, JPEG frames in.
"use strict";

const COLOURS = ["#ff4040", "#40a0ff", "#ffc800", "#50dc78", "#dc64ff"];
const FINAL = new Set(["SUCCEEDED", "FAILED", "REJECTED", "CANCELLED"]);
const $ = (id) => document.getElementById(id);
const state = { tasks: new Map(), selected: null, follow: true, estop: null, ws: null };

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v; else if (k === "style") Object.assign(e.style, v);
    else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

function send(command) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) {
    $("form-error").textContent = "not connected to the console node";
    return;
  }
  state.ws.send(JSON.stringify(command));
}

function lastState(task) {
  const s = task.states[task.states.length - 1];
  return s ? s.state : "";
}

function fmtPose(p) {
  return "(" + p.map((v) => v.toFixed(3)).join(", ") + ") m";
}

// The plan to draw: the grounded one when it is the newest plan's, else the newest plan.
function shownPlan(task) {
  const plan = task.plans[task.plans.length - 1];
  const g = task.grounded;
  if (g && (!plan || (g.attempt === plan.attempt && g.candidate === plan.candidate))) return g;
  return plan || null;
}

function box(b, colour, label, cls, pose) {
  if (!b || b.length !== 4) return null;
  const [x1, y1, x2, y2] = b;
  const d = el("div", { class: "box " + cls, style: {
    left: x1 / 10 + "%", top: y1 / 10 + "%", width: (x2 - x1) / 10 + "%", height: (y2 - y1) / 10 + "%",
    borderColor: colour } });
  d.append(el("span", { class: "label", style: { background: colour } }, label));
  if (pose) d.append(el("span", { class: "pose" }, "→ " + fmtPose(pose)));
  return d;
}

function renderPlan(task) {
  const overlay = $("overlay"), steps = $("plan-steps");
  overlay.replaceChildren(); steps.replaceChildren();
  const plan = task ? shownPlan(task) : null;
  $("plan-of").textContent = plan ? `task ${plan.task_id} · attempt ${plan.attempt} · candidate ${plan.candidate + 1}`
    + (plan === task.grounded ? " · grounded" : "") : "";
  $("plan-text").textContent = plan ? plan.raw_text : "";
  if (!plan) return;
  plan.steps.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length], n = i + 1;
    // a step's pose is where it acts: the object for a pick, the target for a place or a push
    const objPose = s.pose && s.action === "pick" ? s.pose : null;
    const tgtPose = s.pose && s.action !== "pick" ? s.pose : null;
    for (const b of [box(s.box, colour, `${n} ${s.action} ${s.object}`, "object", objPose),
                     box(s.target_box, colour, `${n} → ${s.target}`, "target", tgtPose)]) {
      if (b) { b.dataset.step = n; overlay.append(b); }
    }
    const text = `${s.action} ${s.object}` + (s.target ? ` → ${s.target}` : "");
    const li = el("li", { style: { color: colour } }, el("span", {}, text));
    if (s.pose) li.append(" ", el("span", { class: "pose" }, fmtPose(s.pose)));
    steps.append(li);
  });
}

function renderCurrent() {
  const task = state.selected ? state.tasks.get(state.selected) : null;
  $("current-id").textContent = task ? task.task_id : "";
  $("current-instruction").textContent = task ? task.instruction : "no task yet: type one above";
  const last = task ? lastState(task) : "";
  const badge = $("current-state");
  badge.textContent = last + (task && task.retrying ? " (asking again)" : "");
  badge.className = "state-badge " + last;
  badge.dataset.final = task && task.final ? task.final : "";
  $("cancel").disabled = !task || task.final !== null;
  const list = $("states");
  list.replaceChildren();
  const refusal = $("refusal");
  refusal.hidden = true;
  if (task) {
    for (const s of task.states) {
      const attempt = s.attempt > 1 ? ` attempt ${s.attempt}` : "";
      list.append(el("li", { "data-state": s.state }, el("span", { class: "state " + s.state }, s.state + attempt),
                     " " + s.message));
    }
    list.scrollTop = list.scrollHeight;
    const end = task.states[task.states.length - 1];
    if (task.final && task.final !== "SUCCEEDED" && end) {
      refusal.textContent = `${task.final}${end.reason ? " (" + end.reason + ")" : ""}: ${end.message}`;
      refusal.hidden = false;
    }
  }
  renderPlan(task);
}

function renderTasks() {
  const list = $("tasks");
  list.replaceChildren();
  for (const task of [...state.tasks.values()].reverse()) {
    const last = lastState(task);
    const li = el("li", { "data-id": task.task_id, class: task.task_id === state.selected ? "selected" : "" },
                  el("span", { class: "id" }, task.task_id), el("span", { class: last }, last),
                  el("span", {}, task.instruction));
    li.onclick = () => { state.selected = task.task_id; state.follow = false; render(); };
    list.append(li);
  }
}

function renderEstop() {
  const latched = state.estop;
  const pill = $("estop-state");
  pill.textContent = latched === null ? "e-stop: unknown" : latched ? "E-STOP LATCHED" : "e-stop: clear";
  pill.className = "pill " + (latched === null ? "" : latched ? "bad" : "ok");
  $("estop-reset").hidden = !latched;
}

function render() { renderCurrent(); renderTasks(); renderEstop(); }

function onTask(task) {
  state.tasks.set(task.task_id, task);
  if (state.follow && (task.mine || !state.selected)) state.selected = task.task_id;
}

function renderVocabulary(v) {
  $("vocab-line").textContent = v.line;
  const dl = $("vocab-lists");
  dl.replaceChildren();
  for (const [k, items] of [["actions", v.actions], ["colours", v.colors], ["things", v.graspable],
                             ["containers", v.containers], ["regions", v.zones]]) {
    dl.append(el("dt", {}, k), el("dd", {}, items.join(", ")));
  }
  $("examples").replaceChildren(...v.examples.map((x) => {
    const b = el("button", { type: "button" }, x);
    b.onclick = () => { $("task-input").value = x; $("task-input").focus(); };
    return b;
  }));
  $("task-input").maxLength = v.max_chars;
}

function renderHealth(h) {
  for (const who of ["camera", "planner", "executor"]) {
    const age = h.ages[who], pill = $("health-" + who);
    const ok = age !== null && age < 3;
    pill.textContent = who + (age === null ? ": not heard" : ok ? "" : `: silent ${age.toFixed(0)} s`)
      + (who === "camera" && h.camera_size && ok ? ` ${h.camera_size[0]}×${h.camera_size[1]}` : "");
    pill.className = "pill " + (ok ? "ok" : "bad");
  }
  if (h.estop !== undefined && h.estop !== state.estop) { state.estop = h.estop; renderEstop(); }
}

let frameUrl = null;
function onFrame(blob) {
  const url = URL.createObjectURL(blob);
  const img = $("frame");
  img.onload = () => { if (frameUrl && frameUrl !== url) URL.revokeObjectURL(frameUrl); frameUrl = url; };
  img.src = url;
  $("no-frame").hidden = true;
}

function connect() {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  ws.binaryType = "blob";
  state.ws = ws;
  ws.onopen = () => { $("health-link").textContent = "connected"; $("health-link").className = "pill ok"; };
  ws.onclose = () => {
    $("health-link").textContent = "disconnected: retrying"; $("health-link").className = "pill bad";
    setTimeout(connect, 2000);
  };
  ws.onmessage = (ev) => {
    if (ev.data instanceof Blob) { onFrame(ev.data); return; }
    const m = JSON.parse(ev.data);
    if (m.type === "snapshot") {
      state.tasks.clear();
      for (const t of m.tasks) onTask(t);
      state.estop = m.estop;
      renderVocabulary(m.vocabulary);
      renderHealth(m.health);
      render();
    } else if (m.type === "task") {
      onTask(m.task); render();
    } else if (m.type === "estop") {
      state.estop = m.latched; renderEstop();
    } else if (m.type === "health") {
      renderHealth(m);
    } else if (m.type === "error") {
      $("form-error").textContent = m.message;
    }
  };
}

$("task-form").onsubmit = (ev) => {
  ev.preventDefault();
  const text = $("task-input").value.trim();
  $("form-error").textContent = "";
  if (!text) { $("form-error").textContent = "type a task first"; return; }
  state.follow = true;
  send({ op: "task", instruction: text });
  $("task-input").value = "";
};
$("cancel").onclick = () => { if (state.selected) send({ op: "cancel", task_id: state.selected }); };
$("estop").onclick = () => send({ op: "estop", engage: true });
$("estop-reset").onclick = () => send({ op: "estop", engage: false });
connect();
