// lab dashboard: plain JavaScript, no dependencies, served by `lab serve` at /app.js.
//
// Data flow: on load, GET /api/boards (the map), /api/events (the timeline) and
// /api/history for the selected board (its charts); then the Server-Sent Events of
// /api/stream keep everything live: `event: boards` every second (tiles, header, charts of the
// selected board, per-role aggregates accumulated here), `event: event` as events happen.
// The stream is reopened with backoff when it breaks, and the gap is re-fetched.
//
// Test hooks: tiles carry data-testid="board-<name>" and data-up; charts carry
// data-points (points drawn) and data-marks (events marked on them, as `lab report` does);
// the timeline is data-testid="events" with data-count.
"use strict";

// Uncaught errors, kept for tests and debugging (window.__labErrors).
window.__labErrors = [];
window.addEventListener("error", (e) => window.__labErrors.push(String(e.message)));
window.addEventListener("unhandledrejection", (e) => window.__labErrors.push(String(e.reason)));

const WINDOW_MS = 300 * 1000; // charts show the last 5 minutes
const MIN_WINDOW_MS = 60 * 1000; // ... or at least a minute while data is younger
const MAX_EVENTS_SHOWN = 200;
const ROLE_ORDER = ["lb", "app", "cache", "db-master", "db-replica", "files", "cdn", "auto"];
const ROLE_NAMES = {
  lb: "load balancer", app: "app", cache: "cache", "db-master": "db master",
  "db-replica": "db replica", files: "files", cdn: "cdn", auto: "auto / unassigned",
};

const state = {
  boards: [],
  selected: null,
  selGen: 0,
  hist: emptyHist(),
  roleHist: {}, // role -> { cpu: [[t, v]], net: [[t, v]] }
  events: [],
  eventKeys: new Set(),
  lastBoardsAt: 0,
  es: null,
  backoff: 1000,
  everOpened: false,
};

function emptyHist() {
  return { cpu: [], mem: [], rx: [], tx: [], temp: [] };
}

// ---------- formatting ----------

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function fmtBytes(n) {
  if (n == null || !isFinite(n)) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 1 : 0)) + " " + u[i];
}

function fmtRate(n) {
  if (n == null || !isFinite(n)) return "–";
  const u = ["B/s", "kB/s", "MB/s", "GB/s"];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 1 : 0)) + " " + u[i];
}

function fmtAxisRate(n) {
  const u = ["", "k", "M", "G"];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (Number.isInteger(n) ? n : n.toFixed(1)) + u[i];
}

function fmtNum(v, digits) {
  if (v == null || !isFinite(v)) return "–";
  return Number(v).toFixed(digits);
}

function pad2(n) { return String(n).padStart(2, "0"); }
function hms(ts) { const d = new Date(ts); return pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds()); }
function hm(ts) { const d = new Date(ts); return pad2(d.getHours()) + ":" + pad2(d.getMinutes()); }

function ago(ms) {
  if (ms == null) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 90) return s + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

function rolesOf(b) { return b.roles && b.roles.length ? b.roles : ["auto"]; }
function roleVar(role) { return ROLE_ORDER.includes(role) ? "var(--role-" + role + ")" : "var(--role-auto)"; }
function roleColor(role) {
  const v = getComputedStyle(document.documentElement).getPropertyValue("--role-" + (ROLE_ORDER.includes(role) ? role : "auto"));
  return v.trim() || "#8c8c8c";
}
function memPercent(l) { return l && l.mem_total_bytes > 0 ? (l.mem_used_bytes / l.mem_total_bytes) * 100 : null; }

// ---------- HTTP ----------

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

// ---------- header, legend, map ----------

function renderLegend() {
  const ul = document.getElementById("legend");
  ul.innerHTML = ROLE_ORDER.map((r) => `<li><i style="background:${roleVar(r)}"></i>${esc(ROLE_NAMES[r])}</li>`).join("")
    + '<li><span class="badge down">DOWN</span></li><li><span class="badge thr">THROTTLED</span></li>';
}

function renderHeader() {
  const total = state.boards.length;
  const up = state.boards.filter((b) => b.up).length;
  const el = document.querySelector('[data-testid="cluster-state"]');
  el.dataset.up = String(up);
  el.dataset.total = String(total);
  el.classList.toggle("all-up", total > 0 && up === total);
  el.classList.toggle("some-down", up < total);
  document.getElementById("up-count").textContent = up + "/" + total;
  document.title = `lab · ${up}/${total} up`;
}

function tileHtml(b) {
  const l = b.latest;
  const roles = rolesOf(b).map((r) => `<span class="chip" style="background:${roleVar(r)}">${esc(r)}</span>`).join("");
  const badge = b.up ? '<span class="badge up">UP</span>' : '<span class="badge down">DOWN</span>';
  const thr = l && l.throttled ? '<span class="badge thr">THROTTLED</span>' : "";
  const meta = [b.address, b.arch].filter(Boolean).map(esc).join(" · ");
  let body;
  if (!l) {
    body = `<div class="row muted">no sample yet</div>`;
  } else {
    const cpu = Math.max(0, Math.min(100, l.cpu_percent));
    const mem = memPercent(l) ?? 0;
    body = `
      <div class="row"><span class="label">CPU</span><span class="bar cpu${cpu > 85 ? " hot" : ""}"><span style="width:${cpu.toFixed(0)}%"></span></span><span data-testid="cpu">${fmtNum(l.cpu_percent, 1)} %</span></div>
      <div class="row"><span class="label">mem</span><span class="bar${mem > 90 ? " hot" : ""}"><span style="width:${mem.toFixed(0)}%"></span></span><span>${fmtBytes(l.mem_used_bytes)} / ${fmtBytes(l.mem_total_bytes)}</span></div>
      <div class="row"><span class="label">temp</span><span>${l.temp_c == null ? "–" : fmtNum(l.temp_c, 1) + " °C"}</span><span class="label">load</span><span>${fmtNum(l.load1, 2)}</span></div>
      <div class="row"><span class="label">net</span><span style="color:var(--rx)">↓ ${fmtRate(l.net_rx_bps)}</span><span style="color:var(--tx)">↑ ${fmtRate(l.net_tx_bps)}</span></div>
      ${l.gpu_load_percent == null ? "" : `<div class="row"><span class="label">GPU</span><span>${fmtNum(l.gpu_load_percent, 0)} %</span></div>`}
      <div class="kf">${l.key_figure
        ? `<span class="label">${esc(l.key_figure.label)}</span> <b>${fmtNum(l.key_figure.value, l.key_figure.value < 100 ? 1 : 0)}</b> <span class="label">${esc(l.key_figure.unit)}</span>`
        : '<span class="label">no role figure</span>'}</div>`;
  }
  const seen = b.up ? "" : `<div class="row muted">last seen ${ago(b.last_seen_ms)}</div>`;
  return `<div class="row"><span class="name" title="${esc(b.board)}">${esc(b.board)}</span><span>${badge}${thr}</span></div>
    <div class="meta" title="${esc([b.address, b.arch, b.os].filter(Boolean).join(" · "))}">${roles} ${meta}</div>${seen}${body}`;
}

const tiles = new Map(); // board name -> element
const groups = new Map(); // role -> group element

function groupFor(role) {
  let g = groups.get(role);
  if (!g) {
    g = document.createElement("div");
    g.className = "group";
    g.dataset.role = role;
    g.style.setProperty("--role-color", roleVar(role));
    g.innerHTML = `<h3>${esc(ROLE_NAMES[role] || role)}</h3><div class="tiles"></div>`;
    groups.set(role, g);
  }
  return g;
}

function renderMap() {
  const map = document.getElementById("map");
  document.getElementById("map-empty").style.display = state.boards.length ? "none" : "";
  const byRole = new Map();
  for (const b of state.boards) {
    const role = rolesOf(b)[0];
    if (!byRole.has(role)) byRole.set(role, []);
    byRole.get(role).push(b);
  }
  const order = [...ROLE_ORDER.filter((r) => byRole.has(r)), ...[...byRole.keys()].filter((r) => !ROLE_ORDER.includes(r))];
  const seen = new Set();
  for (const role of order) {
    const g = groupFor(role);
    map.appendChild(g);
    const box = g.querySelector(".tiles");
    for (const b of byRole.get(role)) {
      let t = tiles.get(b.board);
      if (!t) {
        t = document.createElement("div");
        t.tabIndex = 0;
        t.setAttribute("data-testid", "board-" + b.board);
        t.addEventListener("click", () => select(b.board));
        t.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") select(b.board); });
        tiles.set(b.board, t);
      }
      t.className = "tile" + (b.up ? "" : " down") + (b.latest && b.latest.throttled ? " throttled" : "") + (state.selected === b.board ? " selected" : "");
      t.style.setProperty("--role-color", roleVar(rolesOf(b)[0]));
      t.dataset.up = String(b.up);
      t.innerHTML = tileHtml(b);
      box.appendChild(t);
      seen.add(b.board);
    }
  }
  for (const [name, t] of tiles) if (!seen.has(name)) { t.remove(); tiles.delete(name); }
  for (const [role, g] of groups) if (!byRole.has(role)) { g.remove(); groups.delete(role); }
}

// ---------- charts ----------

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 4, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// Draw `series` ([{name, color, points: [[ts_ms, v]]}]) on `canvas` over the last WINDOW_MS.
// opts: {min, max, fmt (axis labels), empty (message when no points)}.
function drawChart(canvas, series, opts) {
  const total = series.reduce((n, s) => n + s.points.length, 0);
  canvas.dataset.points = String(total);
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 300;
  const h = canvas.clientHeight || 150;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const L = 44, R = 8, T = 8, B = 18;
  const pw = w - L - R, ph = h - T - B;
  // The window: the last 5 minutes, or less while there is less data (at least a minute),
  // so a fresh cluster's charts are readable at once.
  const tMax = Date.now();
  let first = tMax;
  for (const s of series) if (s.points.length && s.points[0][0] < first) first = s.points[0][0];
  const span = Math.min(WINDOW_MS, Math.max(MIN_WINDOW_MS, tMax - first + 2000));
  const tMin = tMax - span;
  const step = span <= 90000 ? 10000 : span <= 180000 ? 30000 : 60000;
  let vMax = opts.max;
  if (vMax == null) {
    let m = 0;
    for (const s of series) for (const [t, v] of s.points) if (t >= tMin && v > m) m = v;
    vMax = niceMax(m * 1.1);
  }
  const vMin = opts.min ?? 0;
  const x = (t) => L + ((t - tMin) / span) * pw;
  const y = (v) => T + ph - ((v - vMin) / (vMax - vMin || 1)) * ph;
  const fmt = opts.fmt || ((v) => String(v));

  // grid and y labels
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#8b95a3";
  ctx.strokeStyle = "#2a323d";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const v = vMin + ((vMax - vMin) * i) / 4;
    const yy = Math.round(y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(L, yy); ctx.lineTo(L + pw, yy); ctx.stroke();
    if (total > 0 || opts.max != null) ctx.fillText(fmt(v), L - 5, yy);
  }
  // x labels: every 10 s, 30 s or minute, as fits the window
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const labelW = step < 60000 ? 50 : 34;
  let lastLabel = -Infinity;
  for (let t = Math.ceil(tMin / step) * step; t <= tMax; t += step) {
    const xx = Math.round(x(t)) + 0.5;
    ctx.beginPath(); ctx.moveTo(xx, T); ctx.lineTo(xx, T + ph); ctx.stroke();
    if (xx > L + labelW / 2 && xx < L + pw - labelW / 2 && xx - lastLabel >= labelW + 6) {
      ctx.fillText(step < 60000 ? hms(t) : hm(t), xx, T + ph + 4);
      lastLabel = xx;
    }
  }
  // The control plane's events in the window: a dashed line each (down red, up green).
  const marks = state.events.filter((e) => e.ts_ms >= tMin && e.ts_ms <= tMax);
  canvas.dataset.marks = String(marks.length);
  ctx.save();
  ctx.setLineDash([4, 3]);
  for (const e of marks) {
    ctx.strokeStyle = e.kind === "down" ? "#f85149" : e.kind === "up" ? "#3fb950" : "#8b95a3";
    const xx = Math.round(x(e.ts_ms)) + 0.5;
    ctx.beginPath(); ctx.moveTo(xx, T); ctx.lineTo(xx, T + ph); ctx.stroke();
  }
  ctx.restore();
  if (total === 0) {
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(opts.empty || "no data yet", L + pw / 2, T + ph / 2);
    return;
  }
  ctx.save();
  ctx.beginPath(); ctx.rect(L, T - 1, pw, ph + 2); ctx.clip();
  series.forEach((s, idx) => {
    const pts = s.points.filter(([t]) => t >= tMin - 5000);
    if (!pts.length) return;
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 1.6;
    ctx.lineJoin = "round";
    ctx.beginPath();
    let prev = null;
    for (const [t, v] of pts) {
      if (prev === null || t - prev > 5000) ctx.moveTo(x(t), y(v)); else ctx.lineTo(x(t), y(v));
      prev = t;
    }
    ctx.stroke();
    if (idx === 0 && series.length === 1) {
      // a soft fill under a lone series
      ctx.globalAlpha = 0.12;
      ctx.fillStyle = s.color;
      ctx.beginPath();
      let start = null; prev = null;
      const close = () => { if (start !== null) { ctx.lineTo(x(prev), y(vMin)); ctx.lineTo(x(start), y(vMin)); ctx.closePath(); } };
      for (const [t, v] of pts) {
        if (prev === null || t - prev > 5000) { close(); ctx.moveTo(x(t), y(vMin)); ctx.lineTo(x(t), y(v)); start = t; } else ctx.lineTo(x(t), y(v));
        prev = t;
      }
      close();
      ctx.fill();
      ctx.globalAlpha = 1;
    }
    // last value dot
    const [lt, lv] = pts[pts.length - 1];
    ctx.fillStyle = s.color;
    ctx.beginPath(); ctx.arc(x(lt), y(lv), 2.5, 0, Math.PI * 2); ctx.fill();
  });
  ctx.restore();
  ctx.strokeStyle = "#3a4450";
  ctx.beginPath(); ctx.moveTo(L + 0.5, T); ctx.lineTo(L + 0.5, T + ph + 0.5); ctx.lineTo(L + pw, T + ph + 0.5); ctx.stroke();
}

const pct = (v) => Math.round(v) + "%";

function drawBoardCharts() {
  const hst = state.hist;
  const none = state.selected ? "no data yet" : "select a board";
  drawChart(document.getElementById("chart-cpu"), [{ name: "cpu", color: "#3fb950", points: hst.cpu }], { max: 100, fmt: pct, empty: none });
  drawChart(document.getElementById("chart-mem"), [{ name: "mem", color: "#d2a8ff", points: hst.mem }], { max: 100, fmt: pct, empty: none });
  drawChart(document.getElementById("chart-net"), [
    { name: "rx", color: "#58a6ff", points: hst.rx },
    { name: "tx", color: "#f778ba", points: hst.tx },
  ], { fmt: fmtAxisRate, empty: none });
  drawChart(document.getElementById("chart-temp"), [{ name: "temp", color: "#f0883e", points: hst.temp }], {
    fmt: (v) => Math.round(v) + "°", empty: state.selected ? "no sensor" : none,
  });
}

function drawRoleCharts() {
  const roles = Object.keys(state.roleHist).sort((a, b) => ROLE_ORDER.indexOf(a) - ROLE_ORDER.indexOf(b));
  const cpu = roles.map((r) => ({ name: r, color: roleColor(r), points: state.roleHist[r].cpu }));
  const net = roles.map((r) => ({ name: r, color: roleColor(r), points: state.roleHist[r].net }));
  drawChart(document.getElementById("chart-role-cpu"), cpu, { max: 100, fmt: pct, empty: "collecting…" });
  drawChart(document.getElementById("chart-role-net"), net, { fmt: fmtAxisRate, empty: "collecting…" });
  document.getElementById("role-key").innerHTML = roles.map((r) => `<li><i style="background:${roleVar(r)}"></i>${esc(ROLE_NAMES[r] || r)}</li>`).join("");
}

function trim(points) {
  const cut = Date.now() - WINDOW_MS - 10000;
  let i = 0;
  while (i < points.length && points[i][0] < cut) i++;
  if (i) points.splice(0, i);
}

// ---------- selection and history ----------

async function select(name) {
  if (!name) return;
  state.selected = name;
  state.selGen++;
  const gen = state.selGen;
  state.hist = emptyHist();
  document.querySelector(".charts-panel").dataset.history = "loading";
  history.replaceState(null, "", "#board=" + encodeURIComponent(name));
  document.getElementById("selected-name").textContent = name;
  for (const [n, t] of tiles) t.classList.toggle("selected", n === name);
  updateSelectedInfo();
  drawBoardCharts();
  const q = (s) => `/api/history?board=${encodeURIComponent(name)}&series=${s}&seconds=300`;
  const names = { cpu: "cpu_percent", mem: "mem_used_percent", rx: "net_rx_bps", tx: "net_tx_bps", temp: "temp_c" };
  const keys = Object.keys(names);
  const results = await Promise.all(keys.map((k) => getJson(q(names[k])).then((r) => r.points || []).catch(() => [])));
  if (gen !== state.selGen) return; // another board was selected meanwhile
  keys.forEach((k, i) => {
    const fetched = results[i];
    const last = fetched.length ? fetched[fetched.length - 1][0] : 0;
    state.hist[k] = fetched.concat(state.hist[k].filter(([t]) => t > last));
  });
  drawBoardCharts();
  // From here on, only the live stream adds points (tests wait for this).
  document.querySelector(".charts-panel").dataset.history = "loaded";
}

function updateSelectedInfo() {
  const b = state.boards.find((x) => x.board === state.selected);
  const el = document.getElementById("selected-info");
  if (!b) { el.textContent = "click a tile to chart a board (last 5 minutes)"; return; }
  el.textContent = [rolesOf(b).join(", "), b.address, b.arch, b.os, b.up ? "up" : "DOWN, last seen " + ago(b.last_seen_ms)]
    .filter(Boolean).join(" · ");
}

// Append the selected board's newest sample to its charts (once per sample).
function appendSelected() {
  const b = state.boards.find((x) => x.board === state.selected);
  if (!b || !b.latest || !b.last_seen_ms) return;
  const t = b.last_seen_ms;
  const h = state.hist;
  const lastT = h.cpu.length ? h.cpu[h.cpu.length - 1][0] : 0;
  if (t <= lastT) return;
  const l = b.latest;
  h.cpu.push([t, l.cpu_percent]);
  const m = memPercent(l);
  if (m != null) h.mem.push([t, m]);
  h.rx.push([t, l.net_rx_bps]);
  h.tx.push([t, l.net_tx_bps]);
  if (l.temp_c != null) h.temp.push([t, l.temp_c]);
  Object.values(h).forEach(trim);
}

// Per role: mean CPU of the boards up, sum of their network traffic.
function accumulateRoles() {
  const t = Date.now();
  const agg = {};
  for (const b of state.boards) {
    for (const r of rolesOf(b)) {
      agg[r] = agg[r] || { cpu: 0, n: 0, net: 0 };
      if (b.up && b.latest) {
        agg[r].cpu += b.latest.cpu_percent;
        agg[r].net += b.latest.net_rx_bps + b.latest.net_tx_bps;
        agg[r].n++;
      }
    }
  }
  for (const [r, a] of Object.entries(agg)) {
    const rh = (state.roleHist[r] = state.roleHist[r] || { cpu: [], net: [] });
    if (a.n > 0) {
      rh.cpu.push([t, a.cpu / a.n]);
      rh.net.push([t, a.net]);
    }
    trim(rh.cpu);
    trim(rh.net);
  }
}

// Once at start: rebuild the per-role charts' last minutes from each board's history
// (2-second buckets), so they do not start empty; live points follow.
async function prefillRoles(boards) {
  const series = ["cpu_percent", "net_rx_bps", "net_tx_bps"];
  const per = await Promise.all(boards.map((b) => Promise.all(series.map((s) =>
    getJson(`/api/history?board=${encodeURIComponent(b.board)}&series=${s}&seconds=300`)
      .then((r) => r.points || []).catch(() => [])))));
  const agg = {}; // role -> bucket -> {cpu, n, net}
  boards.forEach((b, i) => {
    const [cpu, rx, tx] = per[i];
    const byBucket = new Map();
    for (const [t, v] of cpu) byBucket.set(Math.floor(t / 2000), { cpu: v, net: 0 });
    for (const pts of [rx, tx]) {
      const last = new Map();
      for (const [t, v] of pts) last.set(Math.floor(t / 2000), v);
      for (const [k, v] of last) { const e = byBucket.get(k); if (e) e.net += v; }
    }
    for (const r of rolesOf(b)) {
      const a = (agg[r] = agg[r] || new Map());
      for (const [k, e] of byBucket) {
        const cur = a.get(k) || { cpu: 0, n: 0, net: 0 };
        cur.cpu += e.cpu; cur.n++; cur.net += e.net;
        a.set(k, cur);
      }
    }
  });
  for (const [r, buckets] of Object.entries(agg)) {
    const keys = [...buckets.keys()].sort((x, y) => x - y);
    const cpu = keys.map((k) => [k * 2000 + 1000, buckets.get(k).cpu / buckets.get(k).n]);
    const net = keys.map((k) => [k * 2000 + 1000, buckets.get(k).net]);
    const rh = (state.roleHist[r] = state.roleHist[r] || { cpu: [], net: [] });
    const lastT = cpu.length ? cpu[cpu.length - 1][0] : 0;
    rh.cpu = cpu.concat(rh.cpu.filter(([t]) => t > lastT));
    rh.net = net.concat(rh.net.filter(([t]) => t > lastT));
  }
  drawRoleCharts();
}

// ---------- events ----------

function addEvents(list, fresh) {
  let added = false;
  for (const e of list) {
    const key = e.ts_ms + "|" + e.board + "|" + e.kind + "|" + e.message;
    if (state.eventKeys.has(key)) continue;
    state.eventKeys.add(key);
    state.events.push(Object.assign({ fresh }, e));
    added = true;
  }
  if (!added) return;
  state.events.sort((a, b) => b.ts_ms - a.ts_ms); // newest first
  if (state.events.length > 1000) state.events.length = 1000;
  renderEvents();
}

function renderEvents() {
  const ol = document.getElementById("events");
  const shown = state.events.slice(0, MAX_EVENTS_SHOWN);
  ol.dataset.count = String(state.events.length);
  document.getElementById("events-count").textContent = state.events.length ? state.events.length + " total" : "";
  if (!shown.length) {
    ol.innerHTML = '<li class="muted" style="display:block">No events yet. Pull a plug: <code>lab kill BOARD</code></li>';
    return;
  }
  ol.innerHTML = shown.map((e) => {
    const what = e.kind === "down" ? "DOWN" : e.kind === "up" ? "up" : "info";
    return `<li class="${esc(e.kind)}${e.fresh ? " fresh" : ""}" data-kind="${esc(e.kind)}" data-board="${esc(e.board)}">`
      + `<span class="t" title="${esc(new Date(e.ts_ms).toString())}">${hms(e.ts_ms)}</span>`
      + `<span class="what">${esc(e.board)} · ${what}</span><span class="msg">${esc(e.message)}</span></li>`;
  }).join("");
  for (const e of shown) e.fresh = false;
}

// ---------- live stream ----------

function setConn(s, text) {
  const el = document.querySelector('[data-testid="connection"]');
  el.dataset.state = s;
  document.getElementById("conn-text").textContent = text;
}

function onBoards(list, live) {
  state.boards = Array.isArray(list) ? list : [];
  if (live) {
    const c = document.querySelector('[data-testid="connection"]');
    c.dataset.updates = String(Number(c.dataset.updates || 0) + 1);
  }
  state.lastBoardsAt = Date.now();
  renderHeader();
  renderMap();
  if (!state.selected && state.boards.length) {
    const wanted = decodeURIComponent((location.hash.match(/board=([^&]+)/) || [])[1] || "");
    const first = state.boards.find((b) => b.board === wanted) || state.boards.find((b) => b.up) || state.boards[0];
    select(first.board);
  }
  appendSelected();
  accumulateRoles();
  updateSelectedInfo();
  drawBoardCharts();
  drawRoleCharts();
}

function connect() {
  setConn("connecting", state.everOpened ? "reconnecting…" : "connecting…");
  const es = new EventSource("/api/stream");
  state.es = es;
  es.onopen = () => {
    setConn("live", "live");
    state.backoff = 1000;
    if (state.everOpened) resync();
    state.everOpened = true;
  };
  es.addEventListener("boards", (m) => {
    try { onBoards(JSON.parse(m.data), true); } catch (err) { console.warn("bad boards event", err); }
  });
  es.addEventListener("event", (m) => {
    try { addEvents([JSON.parse(m.data)], true); } catch (err) { console.warn("bad event", err); }
  });
  es.onerror = () => {
    es.close();
    if (state.es !== es) return;
    setConn("error", `disconnected, retrying in ${Math.round(state.backoff / 1000)} s`);
    setTimeout(connect, state.backoff);
    state.backoff = Math.min(state.backoff * 2, 10000);
  };
}

// After a reconnect: fetch what the gap missed.
function resync() {
  const since = state.events.length ? state.events[0].ts_ms : 0;
  getJson("/api/events?since_ms=" + since).then((l) => addEvents(l, true)).catch(() => {});
  if (state.selected) select(state.selected);
}

function tickClock() {
  document.getElementById("clock").textContent = new Date().toLocaleTimeString();
  if (state.lastBoardsAt && Date.now() - state.lastBoardsAt > 5000 && state.es && state.es.readyState === EventSource.OPEN) {
    setConn("error", "stale: no update for " + Math.round((Date.now() - state.lastBoardsAt) / 1000) + " s");
  }
}

async function start() {
  renderLegend();
  renderEvents();
  drawBoardCharts();
  drawRoleCharts();
  setInterval(tickClock, 1000);
  tickClock();
  window.addEventListener("resize", () => { drawBoardCharts(); drawRoleCharts(); });
  try {
    onBoards(await getJson("/api/boards"));
  } catch (err) {
    setConn("error", "cannot reach the control plane");
  }
  await getJson("/api/events?since_ms=0").then((l) => addEvents(l, false)).catch(() => {});
  connect();
  prefillRoles(state.boards);
}

start();
