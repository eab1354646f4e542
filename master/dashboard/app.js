// gear dashboard: reads the masters' JSON API, follows the event stream,
// and says plainly when what it shows is stale.
"use strict";

const STALE_AFTER = 6000; // ms without a successful refresh
const TOKEN_KEY = "gear.token";
let lastOK = 0;           // time of the last successful refresh
let lastError = "";       // why the last call failed, "" if it did not
let lastEventID = "";     // resume point of the event stream
let refreshTimer = null;
const events = [];

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
function $(id) { return document.getElementById(id); }

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function headers(extra, t) {
  const h = Object.assign({}, extra || {});
  if (t) h["Authorization"] = "Bearer " + t;
  return h;
}

class APIError extends Error {
  constructor(status, msg) { super(msg); this.status = status; }
}

// api calls the JSON API with the token; a 401 asks for the token.
async function api(method, path, body) {
  const sent = token();
  const opts = {method, headers: headers(body !== undefined ? {"Content-Type": "application/json"} : {}, sent), cache: "no-store"};
  if (body !== undefined) opts.body = JSON.stringify(body);
  const resp = await fetch(path, opts);
  if (resp.status === 401) {
    askToken(sent, (await errorText(resp)) || "this cluster needs a token");
    throw new APIError(401, "needs the cluster token");
  }
  if (!resp.ok) throw new APIError(resp.status, method + " " + path + ": " + ((await errorText(resp)) || resp.status + " " + resp.statusText));
  const text = await resp.text();
  return text ? JSON.parse(text) : null;
}

async function errorText(resp) {
  try { const b = await resp.json(); return b.error || ""; } catch (e) { return ""; }
}

// askToken shows the token form for a call refused with the token it
// sent. A refusal of a call sent before the user entered a new token
// (a refresh or the event stream, still in flight) says nothing about
// the new one, so it does not ask again.
function askToken(sent, why) {
  if (sent !== token()) return;
  $("token-form").hidden = false;
  $("token-error").textContent = sent ? "the token was refused: " + why : "";
}

$("token-form").addEventListener("submit", ev => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  $("token").value = "";
  $("token-form").hidden = true;
  restartEvents();
  refresh();
});

function setStale() {
  const age = Date.now() - lastOK;
  const stale = lastError !== "" || lastOK === 0 || age > STALE_AFTER;
  document.body.classList.toggle("stale", stale);
  document.body.dataset.stale = stale ? "1" : "0";
  $("stale").hidden = !stale;
  if (stale) {
    const when = lastOK ? "last updated " + Math.round(age / 1000) + " s ago (" + new Date(lastOK).toLocaleTimeString() + ")" : "no data yet";
    $("stale-why").textContent = when + (lastError ? " — " + lastError : "");
    $("live").textContent = "";
  } else {
    $("live").textContent = "live · updated " + new Date(lastOK).toLocaleTimeString();
  }
}

async function refresh() {
  try {
    const [ms, ws, as] = await Promise.all([api("GET", "/api/v1/masters"), api("GET", "/api/v1/workers"), api("GET", "/api/v1/apps")]);
    renderMasters(ms || []);
    renderWorkers(ws || [], as || []);
    renderApps(as || []);
    lastOK = Date.now();
    lastError = "";
  } catch (e) {
    lastError = e.message || String(e);
  }
  setStale();
}

// scheduleRefresh coalesces the refreshes many events ask for.
function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; refresh(); }, 150);
}

function renderMasters(ms) {
  const q = ms.length > 0 && ms[0].quorum;
  $("quorum").innerHTML = q ? '<span class="state-RUNNING">quorum: yes</span>' : '<span class="state-FAILED">quorum: NO — writes are refused</span>';
  $("masters").tBodies[0].innerHTML = ms.map(m => {
    const lc = m.last_contact ? Math.max(0, Math.round((Date.now() - Date.parse(m.last_contact)))) + " ms ago" : "-";
    const commit = m.commit_stalled_since ? "STALLED at " + m.commit_index + " of " + m.last_index : (m.state === "unreachable" ? "-" : m.commit_index ?? 0);
    const note = [m.error, m.gossip ? "gossip: " + m.gossip : ""].filter(Boolean).join("; ");
    return `<tr data-master="${esc(m.addr)}"><td>${esc(m.addr)}</td><td class="state-${m.state === "leader" || m.state === "follower" ? "RUNNING" : "FAILED"}">${esc(m.state)}</td>` +
      `<td>${esc(m.term)}</td><td>${esc(m.leader)}</td><td>${esc(lc)}</td><td>${esc(commit)}</td><td>${esc(note)}</td></tr>`;
  }).join("");
}

function renderWorkers(ws, apps) {
  $("workers").tBodies[0].innerHTML = ws.map(w => {
    const cpus = w.cpus || [], free = w.free_cpus || [];
    const alive = w.alive ? '<span class="state-RUNNING">alive</span>' : '<span class="state-FAILED">unreachable</span>';
    return `<tr data-worker="${esc(w.id)}"><td>${esc(w.id)}</td><td>${esc(w.addr)}</td><td>${alive}</td><td>${esc(w.gossip || "-")}</td>` +
      `<td>${cpus.length - free.length} of ${cpus.length}</td><td>${esc(free.join(",") || "none")}</td><td>${esc((w.executors || []).join(", ") || "none")}</td></tr>`;
  }).join("");
}

function renderApps(apps) {
  if (apps.length === 0) { $("apps").innerHTML = '<p class="note">No applications. Submit one with <code>gear app submit BUNDLE</code>.</p>'; return; }
  const open = new Set([...document.querySelectorAll("details.tail[open]")].map(d => d.dataset.executor));
  $("apps").innerHTML = apps.map(a => {
    const execs = a.executors || [];
    const running = execs.filter(e => e.state === "RUNNING").length;
    const rows = execs.map(e => {
      const last = e.last_error || e.last_exit || "";
      const tail = (e.log_tail || []).join("\n");
      return `<tr data-executor="${esc(e.id)}" data-state="${esc(e.state)}"><td>${esc(e.id)}</td><td class="state-${esc(e.state)}">${esc(e.state)}</td>` +
        `<td>${esc(e.worker || "-")}</td><td>${esc(e.pid || "-")}</td><td>${esc((e.cpus || []).join(",") || "-")}</td><td>${esc(e.restarts)}</td><td>${esc(last)}</td>` +
        `<td><details class="tail" data-executor="${esc(e.id)}"${open.has(e.id) ? " open" : ""}><summary>log</summary>` +
        `<pre class="tail" data-log="${esc(e.id)}">${esc(tail || "(fetching…)")}</pre></details></td></tr>`;
    }).join("");
    const killed = a.state === "KILLED";
    const procs = a.processes || [];
    const inst = procs.length === 1 ? procs[0].instances : "";
    return `<div class="app" data-app="${esc(a.id)}" data-state="${esc(a.state)}">` +
      `<h3>app ${esc(a.id)} “${esc(a.name)}” <span class="state-${esc(a.state)}">${esc(a.state)}</span> <small>${running}/${execs.length} running</small></h3>` +
      `<div class="actions">` +
      `<button data-act="kill" data-app="${esc(a.id)}"${killed ? " disabled" : ""}>Kill</button>` +
      `<button data-act="restart" data-app="${esc(a.id)}"${killed ? " disabled" : ""}>Rolling restart</button>` +
      (procs.length === 1 ? `<label>instances <input type="number" min="0" value="${esc(inst)}" data-scale="${esc(a.id)}" style="width:4em"${killed ? " disabled" : ""}></label>` +
      `<button data-act="scale" data-app="${esc(a.id)}"${killed ? " disabled" : ""}>Scale</button>` : "") +
      `</div>` +
      `<table class="executors"><thead><tr><th>executor</th><th>state</th><th>worker</th><th>pid</th><th>cpus</th><th>restarts</th><th>last exit / error</th><th>log tail</th></tr></thead><tbody>${rows}</tbody></table></div>`;
  }).join("");
  for (const id of open) loadTail(id);
}

async function loadTail(execID) {
  const pre = document.querySelector(`pre[data-log="${CSS.escape(execID)}"]`);
  if (!pre) return;
  const app = execID.split(".")[0];
  const sent = token();
  try {
    const resp = await fetch(`/api/v1/apps/${encodeURIComponent(app)}/logs?executor=${encodeURIComponent(execID)}&lines=20`, {headers: headers({}, sent), cache: "no-store"});
    if (resp.status === 401) { askToken(sent, await errorText(resp)); return; }
    const text = resp.ok ? await resp.text() : "(" + ((await errorText(resp)) || resp.statusText) + ")";
    const p = document.querySelector(`pre[data-log="${CSS.escape(execID)}"]`);
    if (p) p.textContent = text || "(empty)";
  } catch (e) {
    pre.textContent = "(log unavailable: " + e.message + ")";
  }
}

document.addEventListener("toggle", ev => {
  const d = ev.target;
  if (d.matches && d.matches("details.tail") && d.open) loadTail(d.dataset.executor);
}, true);

document.addEventListener("click", async ev => {
  const b = ev.target.closest("button[data-act]");
  if (!b) return;
  const id = b.dataset.app, act = b.dataset.act;
  let body;
  if (act === "kill" && !confirm(`Kill app ${id}? Its executors stop for good.`)) return;
  if (act === "scale") {
    const n = parseInt(document.querySelector(`input[data-scale="${CSS.escape(id)}"]`).value, 10);
    if (!(n >= 0)) { $("action-result").textContent = "scale: instances must be a number >= 0"; return; }
    body = {instances: n};
  }
  if (act === "restart") body = {};
  try {
    await api("POST", `/api/v1/apps/${encodeURIComponent(id)}/${act}`, body);
    $("action-result").textContent = `app ${id}: ${act} requested`;
  } catch (e) {
    $("action-result").innerHTML = `<span class="error">app ${esc(id)}: ${esc(act)} failed: ${esc(e.message)}</span>`;
  }
  scheduleRefresh();
});

function addEvent(e) {
  events.unshift(e);
  if (events.length > 200) events.pop();
  $("events").innerHTML = events.slice(0, 100).map(e =>
    `<li data-event="${esc(e.id)}" data-type="${esc(e.type)}">${esc(new Date(e.time).toLocaleTimeString())} [${esc(e.type)}] ${esc(e.message)}</li>`).join("");
}

let streamAbort = null;
function restartEvents() { if (streamAbort) streamAbort.abort(); }

// followEvents reads GET /api/v1/events?follow=1 (JSON lines; an empty
// line every few seconds) and refreshes on every event. It reconnects,
// resuming after the last event it saw.
async function followEvents() {
  for (;;) {
    streamAbort = new AbortController();
    let watchdog;
    try {
      const q = "follow=1" + (lastEventID ? "&since=" + encodeURIComponent(lastEventID) : "");
      const sent = token();
      const resp = await fetch("/api/v1/events?" + q, {headers: headers({}, sent), signal: streamAbort.signal, cache: "no-store"});
      if (resp.status === 401) { askToken(sent, await errorText(resp)); throw new Error("needs the cluster token"); }
      if (!resp.ok) throw new Error("events: " + ((await errorText(resp)) || resp.status));
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      const ctl = streamAbort;
      const arm = () => { clearTimeout(watchdog); watchdog = setTimeout(() => ctl.abort(), 10000); };
      arm();
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        arm();
        buf += dec.decode(value, {stream: true});
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i).trim();
          buf = buf.slice(i + 1);
          if (!line) continue;
          const e = JSON.parse(line);
          if (e.id) lastEventID = e.id;
          addEvent(e);
          scheduleRefresh();
        }
      }
      throw new Error("the event stream ended");
    } catch (e) {
      if (!(e.name === "AbortError")) { lastError = "event stream: " + (e.message || e); setStale(); }
    } finally {
      clearTimeout(watchdog);
    }
    await new Promise(r => setTimeout(r, 1000));
    refresh();
  }
}

refresh();
setInterval(refresh, 3000);
setInterval(setStale, 500);
followEvents();
