// The comparison page: lease, show, judge by keyboard, submit (never lost, never doubled), next.
//
// Work in progress lives in localStorage: the draft of the judgement on screen (it survives a reload)
// and an outbox of submits not yet acknowledged. Each submit carries an idempotency key fixed when the
// draft was made, so a retry after a network failure or a server restart stores one annotation.
"use strict";

const config = JSON.parse(document.getElementById("work-config").textContent);
const $ = (id) => document.getElementById(id);
const SAFETY = config.batch.focus === "safety";
const STORE = `annotator:${config.userId}`;
const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000, 15000];

const state = { assignment: null, draft: null, annotationId: null, busy: false, judged: 0 };

// --- storage -------------------------------------------------------------------------------------

function load(key, fallback) {
  try {
    const raw = localStorage.getItem(`${STORE}:${key}`);
    return raw === null ? fallback : JSON.parse(raw);
  } catch (_) {
    return fallback;
  }
}
function save(key, value) {
  localStorage.setItem(`${STORE}:${key}`, JSON.stringify(value));
}
function forget(key) {
  localStorage.removeItem(`${STORE}:${key}`);
}
function newKey() {
  return (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`).replace(/[^\w-]/g, "");
}

// --- the API ---------------------------------------------------------------------------------------

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

class ApiError extends Error {
  constructor(status, body) {
    super(messageOf(body) || `The server answered ${status}.`);
    this.status = status;
    this.body = body;
  }
}

function messageOf(body) {
  if (!body || typeof body !== "object") return "";
  if (body.detail) return String(body.detail);
  return Object.entries(body)
    .map(([field, messages]) => `${field}: ${[].concat(messages).join(" ")}`)
    .join(" ");
}

async function api(method, url, body) {
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return { status: response.status, data };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const retriable = (error) => !(error instanceof ApiError) || error.status >= 500 || error.status === 429;

// Send until the server answers for good; network failures and 5xx are retried with backoff.
async function sendPersistently(method, url, body) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await api(method, url, body);
    } catch (error) {
      if (!retriable(error)) throw error;
      const delay = RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)];
      status(`Connection problem; your work is saved on this device and will be sent again in ${delay / 1000} s…`, "warn");
      await sleep(delay);
    }
  }
}

// --- the outbox of submits -----------------------------------------------------------------------

async function flushOutbox() {
  let outbox = load("outbox", []);
  while (outbox.length) {
    const item = outbox[0];
    try {
      const { data } = await sendPersistently("POST", item.url, item.body);
      state.annotationId = data.id;
    } catch (error) {
      // Refused for good (already judged elsewhere, lease taken over): say so, do not retry forever.
      status(`Not saved: ${error.message}`, "error");
    }
    outbox = load("outbox", []).filter((queued) => queued.body.idempotency_key !== item.body.idempotency_key);
    save("outbox", outbox);
  }
}

// --- rendering -------------------------------------------------------------------------------------

function status(text, kind = "") {
  const line = $("status");
  line.textContent = text;
  line.className = `status ${kind}`;
}

function show(section) {
  for (const id of ["writer", "waiting", "comparison", "after", "empty"]) $(id).hidden = id !== section;
}

function renderStrengths() {
  $("strengths").innerHTML = config.strengths
    .map(
      (s, i) =>
        `<label><input type="radio" name="strength" value="${s.value}"> ${escapeHtml(s.label)} <kbd>${i + 1}</kbd></label>`,
    )
    .join("");
  $("skip-reasons").innerHTML = config.skipReasons
    .map(
      (r, i) => `<label><input type="radio" name="skip" value="${r.value}"> ${escapeHtml(r.label)} <kbd>${i + 1}</kbd></label>`,
    )
    .join("");
}

function renderAssignment(assignment) {
  state.assignment = assignment;
  state.draft = load(`draft:${assignment.id}`, null) || {
    choice: "",
    strength: "",
    safe: { a: "", b: "" },
    comment: "",
    startedAt: Date.now(),
    key: newKey(),
  };
  saveDraft();
  $("dialogue").innerHTML = assignment.dialogue
    .map((turn) => `<div class="turn ${turn.role}"><span class="role">${turn.role === "user" ? "User" : "Assistant"}</span><div class="md">${renderMarkdown(turn.content)}</div></div>`)
    .join("");
  $("prompt").innerHTML = renderMarkdown(assignment.prompt);
  $("response-a").innerHTML = renderMarkdown(assignment.response_a);
  $("response-b").innerHTML = renderMarkdown(assignment.response_b);
  $("response-a").scrollTop = 0;
  $("response-b").scrollTop = 0;
  $("comment").value = state.draft.comment;
  $("skip-panel").hidden = true;
  for (const marks of document.querySelectorAll(".safety-marks")) marks.hidden = !SAFETY;
  history.replaceState(null, "", `/work/assignments/${assignment.id}/`);
  show("comparison");
  syncForm();
  status("");
}

function safetyLabel() {
  const { choice, safe } = state.draft;
  if (!choice || !safe.a || !safe.b) return { label: "" };
  const other = choice === "a" ? "b" : "a";
  const chosenSafe = safe[choice] === "safe";
  const otherSafe = safe[other] === "safe";
  if (!chosenSafe && otherSafe) return { label: "", refused: config.chosenUnsafeMessage };
  if (chosenSafe && !otherSafe) return { label: "chosen_safe_other_unsafe" };
  return { label: chosenSafe ? "both_safe" : "both_unsafe" };
}

function syncForm() {
  const draft = state.draft;
  for (const input of document.querySelectorAll('input[name="choice"]')) input.checked = input.value === draft.choice;
  for (const input of document.querySelectorAll('input[name="strength"]')) input.checked = input.value === draft.strength;
  for (const side of ["a", "b"]) {
    $(`side-${side}`).classList.toggle("chosen", draft.choice === side);
    for (const button of document.querySelectorAll(`.safety-marks[data-side="${side}"] button`)) {
      button.classList.toggle("on", button.dataset.safe === draft.safe[side]);
      button.setAttribute("aria-pressed", String(button.dataset.safe === draft.safe[side]));
    }
  }
  const safety = SAFETY ? safetyLabel() : { label: "" };
  $("refusal").hidden = !safety.refused;
  $("refusal").textContent = safety.refused || "";
  if (SAFETY) {
    const names = Object.fromEntries(config.safetyLabels.map((l) => [l.value, l.label]));
    $("safety-summary").hidden = !safety.label;
    $("safety-summary").textContent = safety.label ? `Safety label: ${names[safety.label]}` : "";
  }
}

function saveDraft() {
  if (state.assignment) save(`draft:${state.assignment.id}`, state.draft);
}

function update(change) {
  Object.assign(state.draft, change);
  saveDraft();
  syncForm();
}

// --- the flow ----------------------------------------------------------------------------------------

function missing() {
  const draft = state.draft;
  if (!draft.choice) return "Choose Response A or B (key A or B).";
  if (!draft.strength) return "Say how much better it is (keys 1 to 4).";
  if (SAFETY) {
    if (!draft.safe.a || !draft.safe.b) return "Mark each response safe or unsafe (Q/W for A, O/P for B).";
    const { refused } = safetyLabel();
    if (refused) return refused;
  }
  return "";
}

async function submit() {
  if (state.busy || !state.assignment) return;
  const problem = missing();
  if (problem) {
    $("refusal").hidden = false;
    $("refusal").textContent = problem;
    return;
  }
  const draft = state.draft;
  const body = {
    choice: draft.choice,
    strength: draft.strength,
    comment: $("comment").value,
    time_spent_ms: Math.min(Date.now() - draft.startedAt, 86_400_000),
    idempotency_key: draft.key,
  };
  if (SAFETY) body.safety_label = safetyLabel().label;
  await send(`/api/v1/assignments/${state.assignment.id}/submit/`, body);
}

async function skip() {
  if (state.busy || !state.assignment) return;
  const reason = document.querySelector('input[name="skip"]:checked');
  if (!reason) {
    status("Pick a reason to skip (keys 1 to 5).", "error");
    return;
  }
  if (reason.value === "other" && !$("comment").value.trim()) {
    status("Say why in the comment when the reason is 'Other'.", "error");
    $("comment").focus();
    return;
  }
  const body = { reason: reason.value, comment: $("comment").value, idempotency_key: `skip-${state.draft.key}` };
  await send(`/api/v1/assignments/${state.assignment.id}/skip/`, body, true);
}

async function send(url, body, skipped = false) {
  state.busy = true;
  const outbox = load("outbox", []);
  outbox.push({ url, body });
  save("outbox", outbox);
  const done = state.assignment;
  status("Saving…");
  await flushOutbox();
  forget(`draft:${done.id}`);
  state.assignment = null;
  state.busy = false;
  if (!skipped) state.judged += 1;
  $("counter").textContent = state.judged ? `${state.judged} judged this session` : "";
  status(skipped ? "Skipped." : "Saved.", "ok");
  if (config.batch.writesPrompts && !skipped) {
    $("continue-text").value = "";
    show("after");
    $("continue-text").focus();
  } else if (config.batch.writesPrompts) {
    startWriting();
  } else {
    await next();
  }
}

async function next() {
  status("Loading the next comparison…");
  try {
    const { status: code, data } = await sendPersistently("POST", `/api/v1/batches/${config.batch.id}/next/`);
    if (code === 204) {
      history.replaceState(null, "", `/work/batches/${config.batch.id}/`);
      show("empty");
      status("");
      return;
    }
    renderAssignment(data);
  } catch (error) {
    status(error.message, "error");
  }
}

async function open(assignmentId) {
  try {
    const { data } = await api("GET", `/api/v1/assignments/${assignmentId}/`);
    if (data.status !== "leased") {
      status("That comparison is already done.", "ok");
      return config.batch.writesPrompts ? startWriting() : next();
    }
    renderAssignment(data);
  } catch (error) {
    status(error.message, "error");
  }
}

// --- writing prompts and live pairs ----------------------------------------------------------------

function startWriting(title = "Write a prompt") {
  $("writer-title").textContent = title;
  $("writer-text").value = load("writing", "");
  history.replaceState(null, "", `/work/batches/${config.batch.id}/`);
  show("writer");
  $("writer-text").focus();
}

async function waitForPair(request) {
  show("waiting");
  status("");
  try {
    let { data } = await sendPersistently("POST", `/api/v1/batches/${config.batch.id}/live-pairs/`, request);
    while (data.status === "pending") {
      await sleep(700);
      ({ data } = await sendPersistently("GET", data.poll_url));
    }
    // The server's reason is written for the annotator (the engine's error stays with staff).
    if (data.status === "failed") throw new Error(data.error || "The pair could not be sampled.");
    forget("writing");
    forget("live");
    renderAssignment(data.assignment);
  } catch (error) {
    forget("live");
    if (error instanceof ApiError && error.status === 409) {
      // Refused for good (the quota reached, the batch closed): nothing more to write here.
      show("empty");
      status(error.message, "error");
      return;
    }
    status(error.message, "error");
    startWriting();
  }
}

async function sendWrittenPrompt() {
  const text = $("writer-text").value.trim();
  if (!text) {
    status("Write a prompt first.", "error");
    return;
  }
  const live = load("live", null) || { text, client_key: newKey() };
  save("live", live);
  await waitForPair({ text, client_key: live.client_key });
}

async function continueDialogue() {
  const text = $("continue-text").value.trim();
  if (!text) {
    status("Write your next message first.", "error");
    return;
  }
  try {
    const pending = load("continue", null) || { key: newKey() };
    save("continue", pending);
    const { data: prompt } = await sendPersistently("POST", `/api/v1/annotations/${state.annotationId}/continue/`, {
      next_message: text,
      client_key: pending.key,
    });
    forget("continue");
    await waitForPair({ prompt: prompt.id });
  } catch (error) {
    status(error.message, "error");
  }
}

// --- keyboard and clicks ---------------------------------------------------------------------------

function inTextBox(event) {
  return ["TEXTAREA", "INPUT"].includes(event.target.tagName) && event.target.type !== "radio";
}

document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    if (!$("writer").hidden) return void (event.preventDefault(), sendWrittenPrompt());
    if (!$("after").hidden) return void (event.preventDefault(), continueDialogue());
  }
  if (event.key === "Escape") {
    if (!$("skip-panel").hidden) $("skip-panel").hidden = true;
    if (document.activeElement) document.activeElement.blur();
    return;
  }
  if (inTextBox(event) || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === config.keys.help) return void ($("keys-help").hidden = !$("keys-help").hidden);
  if ($("comparison").hidden || !state.draft) return;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  const skipping = !$("skip-panel").hidden;
  if (skipping && /^[1-9]$/.test(key)) {
    const reason = config.skipReasons[Number(key) - 1];
    if (reason) document.querySelector(`input[name="skip"][value="${reason.value}"]`).checked = true;
  } else if (key === "Enter") {
    skipping ? skip() : submit();
  } else if (key === config.keys.choose_a || key === config.keys.choose_b) {
    update({ choice: key });
  } else if (config.keys.strength[key]) {
    update({ strength: config.keys.strength[key] });
  } else if (SAFETY && config.keys.safety[key]) {
    const [side, mark] = config.keys.safety[key];
    update({ safe: { ...state.draft.safe, [side]: mark } });
  } else if (key === config.keys.skip) {
    $("skip-panel").hidden = false;
  } else if (key === config.keys.comment) {
    $("comment").focus();
  } else {
    return;
  }
  event.preventDefault();
});

document.addEventListener("change", (event) => {
  if (!state.draft) return;
  if (event.target.name === "choice") update({ choice: event.target.value });
  if (event.target.name === "strength") update({ strength: event.target.value });
});
for (const marks of document.querySelectorAll(".safety-marks")) {
  marks.addEventListener("click", (event) => {
    const mark = event.target.closest("button")?.dataset.safe;
    if (mark && state.draft) update({ safe: { ...state.draft.safe, [marks.dataset.side]: mark } });
  });
}
$("comment").addEventListener("input", () => {
  if (state.draft) {
    state.draft.comment = $("comment").value;
    saveDraft();
  }
});
$("writer-text").addEventListener("input", () => save("writing", $("writer-text").value));
$("judgement").addEventListener("submit", (event) => {
  event.preventDefault();
  submit();
});
$("skip-open").addEventListener("click", () => ($("skip-panel").hidden = false));
$("skip-cancel").addEventListener("click", () => ($("skip-panel").hidden = true));
$("skip-confirm").addEventListener("click", skip);
$("writer-send").addEventListener("click", sendWrittenPrompt);
$("continue-send").addEventListener("click", continueDialogue);
$("new-prompt").addEventListener("click", () => startWriting());
$("help-toggle").addEventListener("click", () => ($("keys-help").hidden = !$("keys-help").hidden));
window.addEventListener("online", flushOutbox);

// --- start ---------------------------------------------------------------------------------------------

(async function start() {
  renderStrengths();
  await flushOutbox();
  const live = load("live", null);
  if (config.assignmentId) await open(config.assignmentId);
  else if (config.batch.writesPrompts && live) await waitForPair(live);
  else if (config.batch.writesPrompts) startWriting();
  else await next();
})();
