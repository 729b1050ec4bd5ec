"use strict";
// Cicada admin dashboard: vanilla JS, no dependencies, no build step.
// All untrusted data (client ids, topics, payloads) goes through textContent.

const TOKEN_KEY = "cicada-admin-token";
const POLL_MS = 2000;
const MAX_SAMPLES = 60;
const PAYLOAD_DISPLAY = 200;

const $ = (sel) => document.querySelector(sel);
const errors = new Map(); // source -> message

function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function showErrors() {
  const el = $("#error");
  const msgs = [...errors.values()];
  el.textContent = msgs.join("\n");
  el.hidden = msgs.length === 0;
}

function setError(source, msg) {
  if (msg) errors.set(source, msg);
  else errors.delete(source);
  showErrors();
}

class ApiError extends Error {}

// Performs an API call; resolves to parsed JSON (or null for empty bodies),
// rejects with ApiError carrying a human-readable message.
async function api(method, path) {
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers: { Authorization: "Bearer " + getToken(), Accept: "application/json" },
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(`${method} ${path}: network error (${e.message})`);
  }
  const text = await resp.text();
  let body = null;
  if (text) {
    try { body = JSON.parse(text); } catch (_) { body = null; }
  }
  if (!resp.ok) {
    let msg = `HTTP ${resp.status}`;
    const err = body && body.error;
    if (err && typeof err === "object") {
      if (err.message) msg += `: ${err.message}`;
      if (err.field !== null && err.field !== undefined) msg += ` (field: ${err.field})`;
    } else if (resp.statusText) {
      msg += ` ${resp.statusText}`;
    }
    throw new ApiError(`${method} ${path.split("?")[0]} → ${msg}`);
  }
  return body;
}

// Runs fn at most once at a time; a call while busy is coalesced into one rerun.
function serialized(fn) {
  let busy = false, again = false;
  const run = async () => {
    if (busy) { again = true; return; }
    busy = true;
    try { await fn(); } finally {
      busy = false;
      if (again) { again = false; run(); }
    }
  };
  return run;
}

function fmtNum(n) {
  return typeof n === "number" ? n.toLocaleString("en-US", { maximumFractionDigits: 1 }) : "–";
}

function fmtBytes(n) {
  if (typeof n !== "number") return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
}

function fmtUptime(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  if (d) return `${d}d ${h}h ${m}m`;
  if (h) return `${h}h ${m}m`;
  return `${m}m ${sec}s`;
}

// ---------- Overview and graphs ----------

const samples = []; // {t, conn, msgIn, msgOut, bytesIn, bytesOut} (rates may be null)
let prev = null;     // previous raw overview + time, for rate computation

function rate(cur, old, secs) {
  if (secs <= 0 || cur < old) return null; // counter reset (broker restart)
  return (cur - old) / secs;
}

function recordSample(ov) {
  const t = performance.now();
  const s = { t, conn: ov.connections, msgIn: null, msgOut: null, bytesIn: null, bytesOut: null };
  if (prev) {
    const secs = (t - prev.t) / 1000;
    s.msgIn = rate(ov.messages_received, prev.ov.messages_received, secs);
    s.msgOut = rate(ov.messages_sent, prev.ov.messages_sent, secs);
    s.bytesIn = rate(ov.bytes_received, prev.ov.bytes_received, secs);
    s.bytesOut = rate(ov.bytes_sent, prev.ov.bytes_sent, secs);
  }
  prev = { t, ov };
  samples.push(s);
  while (samples.length > MAX_SAMPLES) samples.shift();
}

const COLORS = { a: "#2563eb", b: "#ea580c" };

// Draws one or more series (arrays of number|null, aligned to the last
// MAX_SAMPLES slots) on a canvas, with a light grid and a max-value label.
function drawGraph(canvas, series, fmt) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const pad = { l: 6, r: 6, t: 16, b: 6 };
  const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
  let max = 0;
  for (const s of series) for (const v of s.data) if (v !== null && v > max) max = v;
  const top = max > 0 ? max * 1.1 : 1;

  ctx.strokeStyle = "#e5e7eb";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = Math.round(pad.t + (ph * i) / 4) + 0.5;
    ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(pad.l + pw, y); ctx.stroke();
  }
  ctx.fillStyle = "#6b7280";
  ctx.font = "11px system-ui, sans-serif";
  ctx.textBaseline = "top";
  ctx.fillText("max " + fmt(max), pad.l, 1);
  const last = series.map((s) => s.data[s.data.length - 1]).map((v) => (v === null || v === undefined ? "–" : fmt(v)));
  const lastText = "now " + last.join(" / ");
  ctx.fillText(lastText, w - pad.r - ctx.measureText(lastText).width, 1);

  const step = pw / (MAX_SAMPLES - 1);
  for (const s of series) {
    const offset = MAX_SAMPLES - s.data.length;
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let pen = false, points = 0;
    s.data.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      const x = pad.l + (offset + i) * step, y = pad.t + ph - (v / top) * ph;
      if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      pen = true; points++;
    });
    ctx.stroke();
    if (points === 1) { // a single sample: show it as a dot
      const i = s.data.findIndex((v) => v !== null);
      const x = pad.l + (offset + i) * step, y = pad.t + ph - (s.data[i] / top) * ph;
      ctx.beginPath(); ctx.arc(x, y, 2.5, 0, Math.PI * 2); ctx.fill();
    }
  }
  canvas.dataset.drawn = "true";
}

function drawAll() {
  const col = (k) => samples.map((s) => s[k]);
  drawGraph($("#graph-connections"), [{ data: col("conn"), color: COLORS.a }], fmtNum);
  drawGraph($("#graph-messages"), [{ data: col("msgIn"), color: COLORS.a }, { data: col("msgOut"), color: COLORS.b }], fmtNum);
  drawGraph($("#graph-bytes"), [{ data: col("bytesIn"), color: COLORS.a }, { data: col("bytesOut"), color: COLORS.b }], (v) => fmtBytes(v) + "/s");
}

const refreshOverview = serialized(async () => {
  if (!getToken()) return;
  try {
    const ov = await api("GET", "/api/v1/overview");
    setError("overview", null);
    for (const el of document.querySelectorAll("[data-metric]")) {
      const v = ov[el.dataset.metric];
      el.textContent = typeof v === "number" ? String(v) : "–";
      el.title = el.dataset.metric.startsWith("bytes_") ? fmtBytes(v) : fmtNum(v);
    }
    $("#uptime").textContent = typeof ov.uptime_secs === "number" ? "up " + fmtUptime(ov.uptime_secs) : "";
    recordSample(ov);
    drawAll();
  } catch (e) {
    setError("overview", e.message);
  }
});

// ---------- Clients ----------

let clientsSig = "";

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "—" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function renderClients(data) {
  const items = Array.isArray(data.items) ? data.items : [];
  $("#clients-total").textContent = `(${items.length} shown of ${data.total ?? items.length})`;
  const sig = JSON.stringify(items);
  if (sig === clientsSig) return; // unchanged: keep DOM stable
  clientsSig = sig;
  const tbody = $("#clients-table tbody");
  const frag = document.createDocumentFragment();
  for (const c of items) {
    const tr = document.createElement("tr");
    tr.dataset.clientId = c.client_id;
    cell(tr, c.client_id, "id");
    const st = cell(tr, c.connected ? "connected" : "disconnected", "state " + (c.connected ? "on" : "off"));
    st.title = `session expiry interval: ${c.expiry_interval}s`;
    cell(tr, c.protocol);
    const peer = cell(tr, c.peer);
    if (c.listener) peer.title = "listener: " + c.listener;
    cell(tr, c.username);
    cell(tr, c.subscriptions, "num");
    cell(tr, c.queued, "num");
    cell(tr, c.inflight, "num");
    const act = cell(tr, "", "act");
    if (c.connected) {
      const b = document.createElement("button");
      b.className = "kick";
      b.type = "button";
      b.textContent = "Kick";
      act.appendChild(b);
    }
    frag.appendChild(tr);
  }
  if (items.length === 0) {
    const tr = document.createElement("tr");
    const td = cell(tr, "No clients", "empty");
    td.colSpan = 9;
    frag.appendChild(tr);
  }
  tbody.replaceChildren(frag);
}

const refreshClients = serialized(async () => {
  if (!getToken()) return;
  const q = $("#client-search").value.trim();
  try {
    const data = await api("GET", `/api/v1/clients?search=${encodeURIComponent(q)}&limit=100&offset=0`);
    setError("clients", null);
    renderClients(data || {});
  } catch (e) {
    setError("clients", e.message);
  }
});

async function kick(clientId, button) {
  if (!confirm(`Disconnect client "${clientId}"?`)) return;
  button.disabled = true;
  try {
    await api("POST", `/api/v1/clients/${encodeURIComponent(clientId)}/kick`);
    setError("action", null);
  } catch (e) {
    setError("action", e.message);
    button.disabled = false;
  }
  refreshClients();
  refreshOverview();
}

// ---------- Retained ----------

function renderRetained(data) {
  const items = Array.isArray(data.items) ? data.items : [];
  $("#retained-count").textContent = `(${items.length})`;
  const tbody = $("#retained-table tbody");
  const frag = document.createDocumentFragment();
  for (const r of items) {
    const tr = document.createElement("tr");
    tr.dataset.topic = r.topic;
    cell(tr, r.topic, "topic");
    cell(tr, r.qos, "num");
    cell(tr, r.size, "num");
    let text, title = "";
    if (r.payload === null || r.payload === undefined) {
      text = `(binary, ${r.size} bytes)`;
    } else if (r.payload.length > PAYLOAD_DISPLAY) {
      text = r.payload.slice(0, PAYLOAD_DISPLAY) + "…";
      title = r.payload.slice(0, 4000);
    } else {
      text = r.payload;
    }
    const p = cell(tr, text, "payload" + (r.payload == null ? " binary" : ""));
    if (title) p.title = title;
    const act = cell(tr, "", "act");
    const b = document.createElement("button");
    b.className = "delete";
    b.type = "button";
    b.textContent = "Delete";
    act.appendChild(b);
    frag.appendChild(tr);
  }
  if (items.length === 0) {
    const tr = document.createElement("tr");
    const td = cell(tr, "No retained messages match", "empty");
    td.colSpan = 5;
    frag.appendChild(tr);
  }
  tbody.replaceChildren(frag);
}

const refreshRetained = serialized(async () => {
  if (!getToken()) return;
  const filter = $("#retained-filter").value.trim() || "#";
  try {
    const data = await api("GET", `/api/v1/retained?filter=${encodeURIComponent(filter)}&limit=100`);
    setError("retained", null);
    renderRetained(data || {});
  } catch (e) {
    setError("retained", e.message);
  }
});

async function deleteRetained(topic, button) {
  if (!confirm(`Delete the retained message on "${topic}"?`)) return;
  button.disabled = true;
  try {
    await api("DELETE", `/api/v1/retained?topic=${encodeURIComponent(topic)}`);
    setError("action", null);
  } catch (e) {
    setError("action", e.message);
    button.disabled = false;
  }
  refreshRetained();
  refreshOverview();
}

// ---------- Wiring ----------

function updateStatus() {
  $("#status").textContent = getToken() ? "token set" : "enter the admin token to load data";
}

function refreshAll() {
  updateStatus();
  refreshOverview();
  refreshClients();
  refreshRetained();
}

function init() {
  $("#token").value = getToken();
  $("#token-bar").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("#token").value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
    errors.clear();
    showErrors();
    clientsSig = "";
    refreshAll();
  });

  let searchTimer = 0;
  $("#client-search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(refreshClients, 250);
  });

  $("#retained-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    refreshRetained();
  });

  // Event delegation: rows are re-rendered on every poll.
  $("#clients-table").addEventListener("click", (ev) => {
    const b = ev.target.closest("button.kick");
    const tr = b && b.closest("tr[data-client-id]");
    if (tr) kick(tr.dataset.clientId, b);
  });
  $("#retained-table").addEventListener("click", (ev) => {
    const b = ev.target.closest("button.delete");
    const tr = b && b.closest("tr[data-topic]");
    if (tr) deleteRetained(tr.dataset.topic, b);
  });

  window.addEventListener("resize", () => { if (samples.length) drawAll(); });

  refreshAll();
  setInterval(() => {
    if (document.hidden) return;
    refreshOverview();
    refreshClients();
  }, POLL_MS);
}

init();
