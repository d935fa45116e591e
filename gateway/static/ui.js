// The task page: a plain script over the JSON API. Everything shown from the API goes through
// textContent, never parsed as HTML, so a task's result, labels or error cannot inject markup.
"use strict";

const KEY_SLOT = "taskproc.apiKey";
const REFRESH_MS = 2000;
const STATUSES = ["queued", "running", "retrying", "succeeded", "failed", "dead", "cancelled",
                  "rejected"];
const FINAL = new Set(["succeeded", "failed", "dead", "cancelled", "rejected"]);
const REPLAYABLE = new Set(["failed", "dead"]);

const $ = (id) => document.getElementById(id);
let selected = null;   // the task id shown in the detail pane
let timer = null;

// sessionStorage, not localStorage: the key lives as long as the tab, and is not left on disk
// for whoever uses the browser profile next.
const key = {
  get: () => sessionStorage.getItem(KEY_SLOT),
  set: (value) => sessionStorage.setItem(KEY_SLOT, value),
  forget: () => sessionStorage.removeItem(KEY_SLOT),
};

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(method, path) {
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${key.get()}`, Accept: "application/json" },
    cache: "no-store",
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
    throw new ApiError(response.status, detail);
  }
  return body;
}

function notify(text) {
  const notice = $("notice");
  notice.textContent = text || "";
  notice.hidden = !text;
}

function showKeyForm(reason) {
  stopRefresh();
  $("app").hidden = true;
  $("forget-key").hidden = true;
  $("key-form").hidden = false;
  notify(reason);
  $("key-input").focus();
}

function showApp() {
  $("key-form").hidden = true;
  $("app").hidden = false;
  $("forget-key").hidden = false;
  notify("");
  refresh();
}

function handleError(error) {
  if (error instanceof ApiError && error.status === 401) {
    key.forget();
    showKeyForm("The API key was refused (unknown, revoked or malformed). Enter another one.");
    return;
  }
  notify(error instanceof ApiError ? `${error.status}: ${error.message}` : String(error));
}

function text(tag, content, className) {
  const node = document.createElement(tag);
  node.textContent = content === null || content === undefined ? "" : String(content);
  if (className) node.className = className;
  return node;
}

function statusBadge(status) {
  const badge = text("span", status, "status");
  badge.dataset.status = status;
  return badge;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

function percent(progress) {
  return progress ? `${Math.round(progress.fraction * 100)} %` : "";
}

function listQuery() {
  const query = new URLSearchParams({ limit: "50" });
  for (const option of $("filter-status").selectedOptions) query.append("status", option.value);
  const type = $("filter-type").value.trim();
  if (type) query.set("task_type", type);
  const label = $("filter-label").value.trim();
  if (label) query.append("label", label);
  return query;
}

function renderList(page) {
  const rows = page.items.map((task) => {
    const row = document.createElement("tr");
    row.dataset.taskId = task.task_id;
    if (task.task_id === selected) row.className = "selected";
    const status = document.createElement("td");
    status.appendChild(statusBadge(task.status));
    row.append(text("td", when(task.created_at)), text("td", task.task_type), status,
               // An ended task keeps its last report (how far it got); the list shows only live ones.
               text("td", FINAL.has(task.status) ? "" : percent(task.progress)),
               text("td", (task.labels || []).join(", ")),
               text("td", task.task_id, "mono"));
    row.addEventListener("click", () => select(task.task_id));
    return row;
  });
  $("tasks").tBodies[0].replaceChildren(...rows);
  $("empty").hidden = rows.length > 0;
}

function renderHistory(history) {
  return history.map((step) => {
    const item = document.createElement("li");
    item.append(statusBadge(step.status), text("span", ` attempt ${step.attempt}, run ${step.run}`),
                text("time", when(step.at), "muted"));
    if (step.error) item.append(text("div", `${step.error.type}: ${step.error.message}`, "error"));
    return item;
  });
}

function renderDetail(task) {
  $("detail").hidden = false;
  $("d-id").textContent = task.task_id;
  $("d-type").textContent = task.task_type;
  $("d-status").textContent = task.status;
  $("d-status").dataset.status = task.status;
  $("d-attempt").textContent = `${task.attempt} / ${task.run}`;
  $("d-labels").textContent = (task.labels || []).join(", ") || "–";
  $("d-created").textContent = when(task.created_at);
  $("d-finished").textContent = when(task.finished_at);
  const progress = task.progress;
  $("d-progress-box").hidden = !progress;
  if (progress) {
    $("d-progress").value = progress.fraction;
    $("d-progress-text").textContent = `${percent(progress)} ${progress.message || ""}`;
  }
  $("d-error-box").hidden = !task.error;
  $("d-error").textContent = task.error ? `${task.error.type}: ${task.error.message}` : "";
  const hasResult = task.result !== null && task.result !== undefined;
  $("d-result-box").hidden = !hasResult;
  $("d-result").textContent = hasResult ? JSON.stringify(task.result, null, 2) : "";
  $("cancel").hidden = FINAL.has(task.status);
  $("retry").hidden = !REPLAYABLE.has(task.status);
  $("d-history").replaceChildren(...renderHistory(task.history || []));
}

async function refresh() {
  stopRefresh();
  try {
    renderList(await api("GET", `/tasks?${listQuery()}`));
    if (selected) renderDetail(await api("GET", `/tasks/${encodeURIComponent(selected)}`));
    $("refresh-state").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    handleError(error);
    if (error instanceof ApiError && error.status === 401) return;
  }
  // Scheduled after the answer, so a slow gateway is never asked twice at once.
  if ($("auto-refresh").checked) timer = setTimeout(refresh, REFRESH_MS);
}

function stopRefresh() {
  if (timer !== null) clearTimeout(timer);
  timer = null;
}

function select(taskId) {
  selected = taskId;
  refresh();
}

async function act(verb) {
  if (!selected) return;
  try {
    await api("POST", `/tasks/${encodeURIComponent(selected)}/${verb}`);
    notify("");
  } catch (error) {
    handleError(error);
  }
  refresh();
}

function init() {
  const statusFilter = $("filter-status");
  for (const status of STATUSES) statusFilter.appendChild(text("option", status));
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    key.set($("key-input").value.trim());
    $("key-input").value = "";
    showApp();
  });
  $("forget-key").addEventListener("click", () => {
    key.forget();
    showKeyForm("");
  });
  $("filters").addEventListener("change", refresh);
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  $("cancel").addEventListener("click", () => act("cancel"));
  $("retry").addEventListener("click", () => act("retry"));
  if (key.get()) showApp(); else showKeyForm("");
}

document.addEventListener("DOMContentLoaded", init);
