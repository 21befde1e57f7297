// The console: one page, hash routes, the API under /api/v1 with the login's bearer token.
// Live changes come from GET /api/v1/stream read with fetch (EventSource cannot send the
// Authorization header); a poll every 15 s covers a broken stream.
"use strict";
const $ = sel => document.querySelector(sel);
const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const SEV_RANK = { critical: 0, major: 1, warning: 2, info: 3 };
const FALSE_CAUSES = ["cooking", "steam", "dust", "insects", "fault", "test", "malicious", "other"];
const OPERATORS = ["admin", "operator", "manager"];
const NAV = {  // what each role looks at, first = home
  admin: ["board", "estates", "orders", "silences", "fire", "elevators", "notices", "ledger"],
  operator: ["board", "orders", "estates", "silences", "fire", "notices"],
  manager: ["board", "orders", "estates", "silences", "fire", "elevators", "notices"],
  maintenance: ["orders", "board", "estates", "notices"],
  fire_inspector: ["fire", "notices", "ledger", "board", "estates"],
  // the lift orders a market inspector follows are in 电梯监管 (its own 工单 list is empty)
  market_inspector: ["elevators", "notices", "ledger", "board", "estates"],
  housing_authority: ["estates", "elevators", "fire", "notices", "ledger", "board", "fundcases"],
  street_office: ["board", "orders", "estates", "fire", "elevators", "notices", "ledger", "fundcases"],
  owner: ["myhome", "disclosure"],
  owners_committee: ["fundcases", "disclosure"],
};
// who takes which step of a fund case from the console (the API decides who may)
const FUND_APPROVERS = ["owners_committee", "street_office", "housing_authority"];
const FUND_ACCEPTORS = ["owners_committee", "street_office", "housing_authority", "admin"];
const S = { token: sessionStorage.getItem("token"), me: null, stream: null, timers: [], sound: false, audio: null };

class ApiError extends Error { constructor(status, body) { super(body.detail || body.title || status); this.status = status; this.body = body; } }

async function api(path, opts = {}) {
  const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
  if (S.token) headers.Authorization = `Bearer ${S.token}`;
  // read your writes behind a read replica: reads carry the position of our last write
  if (S.lsn && !opts.method) headers["X-Estate-After-Lsn"] = S.lsn;
  if (opts.json !== undefined) { headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(opts.json); }
  const r = await fetch(`/api/v1${path}`, { method: opts.method || "GET", headers, body: opts.body });
  const lsn = r.headers.get("X-Estate-Lsn"); if (lsn) S.lsn = lsn;
  if (r.status === 401 && S.token) { signOut(t("session_over")); throw new ApiError(401, {}); }
  if (r.status === 204) return null;
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

// ------------------------------------------------------------------ formatting
// times as the estates live them: Asia/Shanghai, whatever the browser's own zone
const fmtTime = s => s ? new Date(s).toLocaleString(LANG ? "en-GB" : "zh-CN", { hour12: false, timeZone: "Asia/Shanghai" }) : "—";
// durations as people on duty say them: 10分43秒, 2小时5分, 3天4小时 (10m 43s in English)
function fmtDur(sec) {
  if (sec === null || sec === undefined) return "—";
  const neg = sec < 0; sec = Math.abs(Math.round(sec));
  const d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600), m = Math.floor(sec % 3600 / 60), s = sec % 60;
  const [D, H, M, S] = LANG ? ["d ", "h ", "m ", "s"] : ["天", "小时", "分", "秒"];
  const txt = (d ? `${d}${D}${h}${H}` : h ? `${h}${H}${m}${M}` : m ? `${m}${M}${s}${S}` : `${s}${S}`).trim();
  return neg ? `-${txt}` : txt;
}
// An API problem as a person reads it: the words for its type (no English in Chinese
// mode), the API's own detail kept as the tooltip for whoever needs it.
function problemText(e) {
  const type = e instanceof ApiError && e.body && e.body.type ? String(e.body.type).split("/").pop() : "";
  const known = WORDS[`problem_${type}`];
  if (known) return known[LANG];
  return LANG ? (e.message || t("problem_unknown")) : t("problem_unknown");
}
function notify(e) {
  const el = $("#toast");
  el.textContent = problemText(e);
  el.title = e instanceof ApiError ? (e.body.detail || "") : String(e.message || "");
  el.hidden = false;
  clearTimeout(notify.timer); notify.timer = setTimeout(() => { el.hidden = true; }, 8000);
}
const yuan = fen => (fen / 100).toLocaleString(LANG ? "en-GB" : "zh-CN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const sev = s => `<span class="sev sev-${esc(s)}">${esc(tState(s))}</span>`;
// a device as people on duty name it: the estate's name and where it is, its codes small
const devNamed = x => `<a href="#/device/${encodeURIComponent(x.estate_code)}/${encodeURIComponent(x.device_code)}">${esc(x.estate_name || x.estate_code)} · ${esc(x.device_location || x.device_code)}</a>
  <br><span class="muted">${esc([x.building_code, x.device_code].filter(Boolean).join(" "))}</span>`;
const devLink = (e, c) => `<a href="#/device/${encodeURIComponent(e)}/${encodeURIComponent(c)}">${esc(e)} / ${esc(c)}</a>`;
const table = (heads, rows, attrs = "") => rows.length
  ? `<div class="scroll"><table ${attrs}><thead><tr>${heads.map(h => `<th>${esc(t(h))}</th>`).join("")}</tr></thead><tbody>${rows.join("")}</tbody></table></div>`
  : `<p class="empty">${esc(t("none"))}</p>`;

// ------------------------------------------------------------------ session
async function signIn(user, pass) {
  const form = new URLSearchParams({ username: user, password: pass });
  const r = await fetch("/api/v1/auth/token", { method: "POST", body: form });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, body);
  S.token = body.access_token; sessionStorage.setItem("token", S.token);
  enableSound();  // a click started this: browsers allow sound from here on
}
function signOut(message) {
  if (S.token) fetch("/api/v1/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${S.token}` } }).catch(() => {});
  S.token = null; S.me = null; sessionStorage.removeItem("token"); stopStream();
  location.hash = "#/login"; if (message) sessionStorage.setItem("message", message);
}
// A wall screen stays logged in for its shift: every 5 minutes the login is refreshed
// (the API keeps the same token alive up to ESTATE_API_SESSION_MAX_H after the password);
// a refused refresh signs out through api()'s 401 like any other call.
async function keepAlive() {
  if (!S.token) return;
  try { await api("/auth/refresh", { method: "POST" }); } catch (e) { /* 401: signed out */ }
}
setInterval(keepAlive, 5 * 60 * 1000);
// Sound is for the people who act on an alert: those who sign for it (签收: OPERATORS,
// as the API's acknowledge). An inspector or a street office watching the same board
// cannot silence it, so it would ring all shift.
const actsOnAlerts = () => !!S.me && OPERATORS.includes(S.me.role);
function enableSound() {
  try { S.audio = S.audio || new AudioContext(); S.audio.resume(); S.sound = true; $("#sound").hidden = true; } catch (e) { S.sound = false; }
}
function beep() {  // two short tones: the critical-alert signal
  if (!S.sound || !S.audio || !actsOnAlerts()) return;
  const now = S.audio.currentTime;
  for (const [f, at] of [[880, 0], [660, 0.25]]) {
    const o = S.audio.createOscillator(), g = S.audio.createGain();
    o.frequency.value = f; g.gain.value = 0.15; o.connect(g); g.connect(S.audio.destination);
    o.start(now + at); o.stop(now + at + 0.2);
  }
}

// ------------------------------------------------------------------ live stream
const listeners = new Set();
function startStream() {
  if (S.stream || !S.token) return;
  const ctrl = new AbortController(); S.stream = ctrl;
  (async () => {
    let lastId = null;
    while (!ctrl.signal.aborted) {
      try {
        const headers = { Authorization: `Bearer ${S.token}`, Accept: "text/event-stream" };
        if (lastId) headers["Last-Event-ID"] = lastId;
        const r = await fetch("/api/v1/stream", { headers, signal: ctrl.signal });
        if (!r.ok) throw new Error(r.status);
        setLive(true);
        const reader = r.body.getReader(), dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const frame = buf.slice(0, i); buf = buf.slice(i + 2);
            const ev = { event: "message", data: "" };
            for (const line of frame.split("\n")) {
              if (line.startsWith("id: ")) lastId = line.slice(4);
              else if (line.startsWith("event: ")) ev.event = line.slice(7);
              else if (line.startsWith("data: ")) ev.data += line.slice(6);
            }
            if (ev.data) { window.__liveEvents = (window.__liveEvents || 0) + 1; let body = null; try { body = JSON.parse(ev.data); } catch (e) { /* keep null */ }
              for (const f of listeners) f(ev.event, body); }
          }
        }
      } catch (e) { if (ctrl.signal.aborted) return; }
      setLive(false);
      await new Promise(res => setTimeout(res, 3000));
    }
  })();
}
function stopStream() { if (S.stream) S.stream.abort(); S.stream = null; setLive(false); }
function setLive(on) { const el = $("#live"); el.className = `live ${on ? "on" : "off"}`; el.textContent = t(on ? "live" : "offline"); el.dataset.i18n = on ? "live" : "offline"; }

// ------------------------------------------------------------------ routing
// Each route renders into a view of its own. A route that is left while it still awaits the
// API (the user clicked on, or a hash change and a login both routed) must neither write
// into the page that replaced it nor leave timers and listeners behind: its view is
// detached, so its lookups find nothing, and what it registers late is dropped at once.
const scoped = view => sel => view.querySelector(sel);
function every(view, ms, f) { if (view.isConnected) S.timers.push(setInterval(f, ms)); }
function onLive(view, f) { if (!view.isConnected) return; listeners.add(f); S.cleanup.push(() => listeners.delete(f)); }
function debounce(f, ms) { let h = null; return () => { clearTimeout(h); h = setTimeout(f, ms); }; }

async function route() {
  for (const h of S.timers) clearInterval(h); S.timers = [];
  for (const f of S.cleanup || []) f(); S.cleanup = [];
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const [page, ...args] = parts;
  const view = document.createElement("div");
  $("#view").replaceChildren(view);
  if (page === "public") return renderPublic(view, args[0]);
  if (!S.token) return renderLogin(view);
  if (!S.me) {
    let me;
    try { me = await api("/auth/me"); } catch (e) { return; }
    if (!view.isConnected) return;  // another route took over meanwhile and did this
    S.me = S.me || me;
    startStream();
  }
  renderHeader();
  const pages = { board: renderBoard, alert: renderAlert, estates: renderEstates, estate: renderEstate,
    device: renderDevice, orders: renderOrders, silences: renderSilences, fire: renderFire,
    elevators: renderElevators, disclosure: renderDisclosureChooser, notices: renderNotices,
    notice: renderNotice, ledger: renderLedger, myhome: renderMyHome, fundcases: renderFundCases };
  const home = (NAV[S.me.role] || ["board"])[0];
  const f = pages[page] || pages[home];
  view.innerHTML = `<p class="muted">${t("loading")}</p>`;
  try { await f(view, ...args); } catch (e) {
    if (!view.isConnected || (e instanceof ApiError && e.status === 401)) return;
    view.innerHTML = `<p class="error">${esc(e instanceof ApiError && e.status === 404 ? t("not_found") : e.message)}</p>`;
  }
}

function renderHeader() {
  const page = location.hash.replace(/^#\/?/, "").split("/")[0];
  const nav = S.me ? NAV[S.me.role] || [] : [];
  $("#nav").innerHTML = nav.map(p => `<a href="#/${p}" data-nav="${p}" class="${p === page ? "on" : ""}">${esc(t(p))}</a>`).join("");
  $("#who").textContent = S.me ? `${S.me.name} · ${t(`role_${S.me.role}`)}` : "";
  $("#logout").hidden = !S.me;
  $("#sound").hidden = !actsOnAlerts() || S.sound;
  $("#live").hidden = !S.me;  // owners on the public page have no live feed to watch
  $("#lang").textContent = LANG ? "中文" : "English";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
}

function renderLogin(view) {
  renderHeader();
  const msg = sessionStorage.getItem("message") || ""; sessionStorage.removeItem("message");
  view.innerHTML = `<form class="login" id="login-form">
    <h1>${esc(t("login"))}</h1>
    <label>${esc(t("username"))}<br><input name="username" autocomplete="username" required></label>
    <label>${esc(t("password"))}<br><input name="password" type="password" autocomplete="current-password" required></label>
    <button class="primary" type="submit">${esc(t("login"))}</button>
    <p class="error" id="login-error">${esc(msg)}</p></form>`;
  $("#login-form").onsubmit = async ev => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    try { await signIn(f.get("username"), f.get("password")); if (location.hash === "#/") route(); else location.hash = "#/"; }
    catch (e) { $("#login-error").textContent = `${t("login_failed")}: ${e.message}`; }
  };
}

// ------------------------------------------------------------------ alert board
async function renderBoard(view) {
  const $ = scoped(view);
  view.innerHTML = `<h1>${esc(t("board"))} <span class="muted" id="board-count"></span></h1><div id="board"></div>`;
  const load = async () => {
    const [page, titles, orders] = await Promise.all([api("/alerts?state=open&limit=500"), ruleTitles(),
      api("/work-orders?state=live&limit=500").then(r => r.items).catch(() => [])]);  // not every role sees orders
    const byIncident = Object.fromEntries(orders.map(o => [o.incident_id, o]));
    const orderCell = a => {
      const o = byIncident[a.incident_id];
      if (!o) return "—";
      const [which, due] = nextDue(o);
      return `<span data-order-state="${esc(o.state)}">${esc(tState(o.state))}</span> · ${esc(o.assignee_name || o.assignee || "—")}${o.escalation_level ? ` <span class="overdue" title="${esc(t("escalated"))} ${o.escalation_level}">↑${o.escalation_level}</span>` : ""}
        ${due ? `<br><span class="muted">${esc(t(which))}</span> <span class="num" data-due="${esc(due)}"></span>` : ""}`;
    };
    const alerts = page.items.sort((a, b) => SEV_RANK[a.severity] - SEV_RANK[b.severity] || b.first_seen.localeCompare(a.first_seen));
    $("#board-count").textContent = `(${alerts.length})`;
    const canAct = OPERATORS.includes(S.me.role);
    const rows = alerts.map(a => {
      const unacked = !a.acknowledged_at;
      const fire = a.alert_type === "fire.alarm" && a.confirmation === "to_be_confirmed";
      const acts = !canAct ? "" : (unacked ? `<button data-ack="${a.id}">${esc(t("acknowledge"))}</button> ` : `<span class="ok">${esc(t("acknowledged"))}</span> `)
        + (fire ? `<button data-confirm="${a.id}">${esc(t("confirm_fire"))}</button> <button data-false="${a.id}">${esc(t("false_alarm"))}</button>` : "");
      return `<tr class="alert-row ${esc(a.severity)} ${unacked ? "unacked" : ""}" data-alert-id="${a.id}" data-alert-type="${esc(a.alert_type)}">
        <td>${sev(a.severity)}</td>
        <td><a href="#/alert/${a.id}">${esc(tAlert(a.alert_type))}</a>${a.muted_by ? ` <span class="muted">(${esc(t("muted"))})</span>` : ""}
          ${titles[a.rule_id] ? `<br><span class="muted rule-title">${esc(titles[a.rule_id][LANG])}</span>` : ""}
          ${a.confirmation ? `<br><span class="muted">${esc(tState(a.confirmation))}</span>` : ""}</td>
        <td>${devNamed(a)}</td>
        <td class="num">${fmtTime(a.first_seen)}<br><span class="muted" data-since="${esc(a.first_seen)}"></span></td>
        <td class="order-cell">${orderCell(a)}</td>
        <td>${acts}</td></tr>`;
    });
    $("#board").innerHTML = alerts.length ? table(["severity", "type", "device", "since", "work_order", "action"], rows, 'id="alert-table"')
      : `<p class="empty" id="no-alerts">${esc(t("no_alerts"))}</p>`;
    tick();
    S.critical = alerts.some(a => a.severity === "critical" && !a.acknowledged_at && !a.muted_by);
  };
  const tick = () => { for (const el of document.querySelectorAll("[data-since]")) el.textContent = fmtDur((Date.now() - new Date(el.dataset.since)) / 1000); countdown(); };
  $("#board").onclick = async ev => {
    const b = ev.target.closest("button"); if (!b) return;
    b.disabled = true;
    try {
      if (b.dataset.ack) await api(`/alerts/${b.dataset.ack}/acknowledge`, { method: "POST" });
      if (b.dataset.confirm) await api(`/alerts/${b.dataset.confirm}/confirm`, { method: "POST" });
      if (b.dataset.false) {  // the cause from the fixed list (inspectors count them)
        b.disabled = false;
        const cell = b.closest("td");
        cell.innerHTML = `<form class="inline false-alarm" data-alert="${esc(b.dataset.false)}"><select name="cause" required>
          ${FALSE_CAUSES.map(c => `<option value="${c}">${esc(t("cause_" + c))}</option>`).join("")}</select>
          <input name="note" placeholder="${esc(t("cause_note"))}" maxlength="500">
          <button type="submit" class="primary">${esc(t("false_alarm"))}</button></form>`;
        cell.querySelector("form").onsubmit = async ev => {
          ev.preventDefault(); const f = new FormData(ev.target);
          const body = { cause: f.get("cause") }; if (f.get("note")) body.note = f.get("note");
          try { await api(`/alerts/${ev.target.dataset.alert}/false-alarm`, { method: "POST", json: body }); }
          catch (e) { notify(e); }
          await load();
        };
        return;
      }
    } catch (e) { notify(e); }
    await load();
  };
  await load();
  onLive(view, debounce((ev) => load().catch(() => {}), 300));
  every(view, 15000, () => load().catch(() => {}));
  every(view, 1000, tick);
  every(view, 2500, () => { if (S.critical) beep(); });
}

// ------------------------------------------------------------------ incident detail
const METRIC_OF = { "elevator": "floor", "fire": "pressure_mpa", "drainage": "level_m", "water_supply": "pressure_mpa" };
function metricFor(alertType, kind, latest) {
  if (/pressure/.test(alertType)) return "pressure_mpa";
  if (/tank|level|overflow/.test(alertType)) return "level_m";
  if (/overspeed/.test(alertType)) return "speed_mps";
  if (/residual/.test(alertType)) return "residual_current_ma";
  if (/temperature/.test(alertType)) return "cable_temp_c";
  if (/chlorine/.test(alertType)) return "chlorine_mg_l";
  if (/turbidity/.test(alertType)) return "turbidity_ntu";
  if (/pump/.test(alertType)) return kind === "water_supply" ? "pressure_mpa" : "pump_running";
  if (/door/.test(alertType) && kind === "fire") return "open";
  if (/water_detected/.test(alertType)) return "water_detected";
  const m = METRIC_OF[kind];
  // an event-only device (a smoke detector, a panel) has no curve to draw: null
  return latest && m in latest ? m : Object.keys(latest || {})[0] || null;
}
// evidence as people read it: a table, times local, yes/no, lists of readings as rows
const TIME_KEY = /(^|_)(ts|at|time|since|until)$|_at$/;
function evidenceValue(k, v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "boolean") return t(v ? "yes" : "no");
  if (typeof v === "number" && TIME_KEY.test(k) && v > 1e9 && v < 4e9) return fmtTime(new Date(v * 1000).toISOString());
  if (typeof v === "string" && TIME_KEY.test(k) && !isNaN(Date.parse(v))) return fmtTime(v);
  if (Array.isArray(v) && v.length && v.every(x => x && typeof x === "object" && !Array.isArray(x))) {
    const keys = [...new Set(v.flatMap(x => Object.keys(x)))];
    return `<div class="scroll"><table class="sub"><thead><tr>${keys.map(x => `<th>${esc(x)}</th>`).join("")}</tr></thead>
      <tbody>${v.map(x => `<tr>${keys.map(key => `<td>${evidenceValue(key, x[key])}</td>`).join("")}</tr>`).join("")}</tbody></table></div>`;
  }
  if (typeof v === "object") return evidenceTable(v, "");
  return esc(String(v));
}
function evidenceTable(ev, attrs = 'id="evidence"') {
  const rows = Object.entries(ev || {});
  return rows.length ? `<table class="kv" ${attrs}>${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${evidenceValue(k, v)}</td></tr>`).join("")}</table>`
    : `<p class="empty">${esc(t("none"))}</p>`;
}

async function renderAlert(view, id) {
  const $ = scoped(view);
  const a = await api(`/alerts/${encodeURIComponent(id)}`);
  const dev = await api(`/devices/${encodeURIComponent(a.estate_code)}/${encodeURIComponent(a.device_code)}`).catch(() => null);
  const orders = (await api(`/work-orders?state=all&estate=${encodeURIComponent(a.estate_code)}&limit=200`).catch(() => ({ items: [] }))).items;
  const order = orders.find(o => o.incident_id === a.incident_id);
  const metric = metricFor(a.alert_type, a.kind, dev && dev.latest);
  view.innerHTML = `<h1>${sev(a.severity)} ${esc(tAlert(a.alert_type))} · <a href="#/device/${encodeURIComponent(a.estate_code)}/${encodeURIComponent(a.device_code)}">${esc(a.estate_name || a.estate_code)} · ${esc(a.device_location || a.device_code)}</a>
    <span class="muted">${esc(a.building_code || "")} ${esc(a.device_code)}</span></h1>
    <p>${esc(t("state"))}: <b>${esc(tState(a.state))}</b> ${a.confirmation ? `· ${esc(tState(a.confirmation))}` : ""}
      · ${esc(t("since"))} ${fmtTime(a.first_seen)} ${a.acknowledged_at ? `· ${esc(t("acknowledged"))} ${fmtTime(a.acknowledged_at)} (${esc(a.acknowledged_by)})` : ""}</p>
    ${order ? `<p>${esc(t("work_order"))} <a href="#/orders">#${order.id}</a>: ${esc(tState(order.state))} → ${esc(order.assignee_name || order.assignee || "—")}</p>` : ""}
    <h2>${esc(t("evidence"))}</h2>
    <div class="card" id="evidence-card">${evidenceTable(a.evidence)}</div>
    ${metric ? `<h2>${esc(t("history"))}: ${esc(metric)}</h2><svg class="chart" id="evidence-chart"></svg>` : `<p class="muted" id="no-curve">${esc(t("events_only"))}</p>`}
    <h2>${esc(t("changes"))}</h2>
    ${table(["since", "state", "severity", "author"], a.changes.map(c => `<tr><td>${fmtTime(c.at)}</td><td>${esc(tChange(c.change))}</td><td>${sev(c.severity)}</td><td>${esc(c.actor === "engine" ? t("actor_engine") : c.actor)}</td></tr>`), 'id="changes"')}`;
  if (!metric) return;
  const start = new Date(new Date(a.first_seen).getTime() - 30 * 60e3);
  const end = new Date(Math.min(Date.now(), (a.cleared_at ? new Date(a.cleared_at).getTime() : Date.now()) + 10 * 60e3));
  await chartInto($("#evidence-chart"), a.estate_code, a.device_code, metric, start, end, [{ at: a.first_seen, label: tAlert(a.alert_type) }]);
}

async function chartInto(svg, estate, code, metric, start, end, marks) {
  const initial = [start, end];
  const draw = async (s, e) => {
    const q = new URLSearchParams({ metric, start: s.toISOString(), end: e.toISOString() });
    const series = await api(`/devices/${encodeURIComponent(estate)}/${encodeURIComponent(code)}/series?${q}`);
    svg.dataset.points = series.points.length; svg.dataset.level = series.level;
    drawChart(svg, series, { start: s, end: e, marks, onZoom: (a, b) => draw(a, b), onReset: () => draw(...initial) });
  };
  await draw(start, end);
  return draw;
}

// ------------------------------------------------------------------ estates and devices
async function renderEstates(view) {
  const $ = scoped(view);
  const estates = await api("/estates");
  view.innerHTML = `<h1>${esc(t("estates"))}</h1><div class="cards">${estates.map(e => `
    <a class="card" href="#/estate/${encodeURIComponent(e.code)}" style="text-decoration:none;color:inherit" data-estate="${esc(e.code)}">
      <h3>${esc(e.name)} <span class="muted">${esc(e.code)}</span></h3>
      <div>${esc(t("devices"))} <b class="num">${e.devices}</b> · ${esc(t("online"))} <b class="num ${e.online < e.devices ? "overdue" : "ok"}">${e.online}</b></div>
      <div>${esc(t("open_alerts"))} <b class="num">${e.open_alerts}</b> · ${esc(t("critical"))} <b class="num ${e.critical_alerts ? "overdue" : ""}">${e.critical_alerts}</b></div>
      <div>${esc(t("live_orders"))} <b class="num">${e.live_orders}</b> · ${esc(t("buildings"))} ${e.buildings}</div></a>`).join("")}</div>`;
}

async function renderEstate(view, code) {
  const $ = scoped(view);
  const e = await api(`/estates/${encodeURIComponent(code)}`);
  const orders = (await api(`/work-orders?estate=${encodeURIComponent(code)}&limit=100`).catch(() => ({ items: [] }))).items;
  view.innerHTML = `<h1>${esc(e.name)} <span class="muted">${esc(e.code)}</span></h1>
    <p class="muted">${esc(e.address || "")} · <a href="#/public/${encodeURIComponent(e.code)}">${esc(t("disclosure"))}</a></p>
    <h2>${esc(t("buildings"))}</h2>
    ${table(["building", "devices", "online", "open_alerts"], e.building_list.map(b => `<tr><td>${esc(b.name || t("shared"))}</td><td class="num">${b.devices}</td>
      <td class="num ${b.online < b.devices ? "overdue" : "ok"}">${b.online}</td><td class="num">${b.open_alerts}</td></tr>`))}
    <h2>${esc(t("live_orders"))}</h2>
    ${table(["work_order", "type", "device", "state", "assignee"], orders.map(o => `<tr><td>#${o.id}</td><td>${esc(tAlert(o.alert_type))}</td><td>${devLink(o.estate_code, o.device_code)}</td><td>${esc(tState(o.state))}</td><td>${esc(o.assignee || "—")}</td></tr>`))}
    <h2>${esc(t("devices"))}</h2>
    ${table(["device", "kind", "building", "online", "last_seen", "open_alerts"], e.device_list.map(d => `<tr><td>${devLink(d.estate_code, d.code)} ${esc(d.location || "")}</td><td title="${esc(d.kind)} / ${esc(d.subtype)}">${esc(tDevice(d.subtype))}</td>
      <td>${esc(d.building_name || d.building_code || t("shared"))}</td><td class="${d.online ? "ok" : "overdue"}">${d.online === null ? "—" : d.online ? "●" : "○"}</td>
      <td>${fmtTime(d.last_seen)}</td><td>${d.open_alerts ? sev(d.worst_severity) + " " + d.open_alerts : ""}</td></tr>`))}`;
}

async function renderDevice(view, estate, code) {
  const $ = scoped(view);
  const path = `/devices/${encodeURIComponent(estate)}/${encodeURIComponent(code)}`;
  const d = await api(path);
  const metrics = Object.keys(d.latest).filter(k => !["ts", "seq"].includes(k));
  let metric = metricFor("", d.kind, d.latest);
  // names and units from the contract, for people: 轿厢载荷 (%), not load_pct
  const vocab = Object.fromEntries((d.metrics || []).map(m => [m.name, m]));
  const label = k => { const m = vocab[k]; return m ? `${LANG ? m.en : m.zh}${m.unit ? ` (${m.unit})` : ""}` : k; };
  const coded = (k, x) => ((vocab[k] && vocab[k].codes) || []).find(c => c[0] === x);  // mode 0 → 正常
  const shown = (k, x, c = coded(k, x)) => typeof x === "boolean" || (vocab[k] && vocab[k].type === "boolean")
    ? t(x ? "yes" : "no") : c ? c[LANG ? 2 : 1] : typeof x === "number" ? String(+x.toFixed(3)) : String(x);
  // named as people on duty name it (华祥苑 · 1号楼 · 1号梯), the codes small
  const where = [d.estate_name, d.building_name, d.location].filter(Boolean).map(esc).join(" · ");
  view.innerHTML = `<h1>${where || esc(d.code)} <span class="muted">${esc(tDevice(d.subtype))} · <span class="code">${esc(d.estate_code)} ${esc(d.code)}</span></span></h1>
    <p>${esc(t("online"))}: <b class="${d.online ? "ok" : "overdue"}">${d.online ? "●" : "○"}</b> · ${esc(t("last_seen"))} ${fmtTime(d.last_seen)}
      · ${esc(t("company"))} ${esc(d.maintenance_name || d.maintenance_code || "—")} ${d.inspection_due ? `· ${esc(t("due"))} ${esc(d.inspection_due)}` : ""}</p>
    <h2>${esc(t("latest"))}</h2><div class="cards" id="latest"></div>
    <h2>${esc(t("history"))}</h2>
    <form class="inline" id="chart-form"><label>${esc(t("metric"))}<select name="metric">${metrics.map(m => `<option value="${esc(m)}" ${m === metric ? "selected" : ""}>${esc(label(m))}</option>`).join("")}</select></label>
      <label>${esc(t("range"))}<select name="range"><option value="1">1h</option><option value="6" selected>6h</option><option value="24">24h</option><option value="168">7d</option><option value="720">30d</option></select></label>
      <span class="muted">${esc(t("zoom_hint"))}</span></form>
    <svg class="chart" id="device-chart"></svg>
    ${d.kind === "elevator" ? `<p class="muted">${esc(t("emergency_code"))} ${esc(d.emergency_code || "—")} · ${esc(t("registration_no"))} ${esc(d.registration_no || "—")}</p><section id="maintenance"></section>` : ""}`;
  const showLatest = v => { $("#latest").innerHTML = Object.entries(v.latest).map(([k, x]) => `<div class="card" data-metric="${esc(k)}" title="${esc(k)}"><div class="muted">${esc(label(k))}</div><div class="stat num">${esc(shown(k, x))}</div></div>`).join(""); };
  showLatest(d);
  const draw = () => { const f = new FormData($("#chart-form")); metric = f.get("metric");
    const end = new Date(), start = new Date(end - Number(f.get("range")) * 3600e3);
    return chartInto($("#device-chart"), estate, code, metric, start, end, []); };
  $("#chart-form").onchange = () => draw().catch(e => notify(e));
  if (d.kind === "elevator") await maintenanceSection($("#maintenance"), d);
  if (metrics.length) await draw();
  every(view, 5000, async () => showLatest(await api(path)));
}

// ------------------------------------------------------------------ work orders
function nextDue(o) {
  if (["created", "dispatched", "reopened"].includes(o.state)) return ["ack_due", o.ack_due];
  if (o.state === "acknowledged") return o.arrive_due ? ["arrive_due", o.arrive_due] : ["resolve_due", o.resolve_due];
  if (o.state === "on_site") return ["resolve_due", o.resolve_due];
  return [null, null];
}
// every deadline on the page counts down each second
function countdown() {
  for (const el of document.querySelectorAll("[data-due]")) {
    const left = (new Date(el.dataset.due) - Date.now()) / 1000;
    el.textContent = left >= 0 ? (LANG ? `${fmtDur(left)} ${t("remaining")}` : `${t("remaining")} ${fmtDur(left)}`) : `${t("overdue")} ${fmtDur(-left)}`;
    el.classList.toggle("overdue", left < 120);
  }
}
// the rules' titles by id (two rules may raise one alert type), read once per login
async function ruleTitles() {
  if (!S.rules) S.rules = Object.fromEntries((await api("/rules")).map(r => [r.rule_id, [r.title_zh, r.title_en]]));
  return S.rules;
}

async function renderOrders(view) {
  const $ = scoped(view);
  view.innerHTML = `<h1>${esc(t("orders"))}</h1><div id="orders"></div>`;
  const canStep = o => ["admin", "operator", "manager"].includes(S.me.role) || (S.me.role === "maintenance" && o.assignee === S.me.org_code);
  const load = async () => {
    const orders = (await api("/work-orders?state=live&limit=200")).items
      .sort((a, b) => (nextDue(a)[1] || "9").localeCompare(nextDue(b)[1] || "9"));
    $("#orders").innerHTML = table(["work_order", "type", "device", "assignee", "state", "deadline", "remaining", "action"], orders.map(o => {
      const [which, due] = nextDue(o);
      const step = { created: "acknowledge", dispatched: "acknowledge", reopened: "acknowledge", acknowledged: "arrive", on_site: "resolve" }[o.state];
      return `<tr data-order-id="${o.id}" data-state="${esc(o.state)}"><td>#${o.id}${o.escalation_level ? ` <span class="overdue" title="${esc(t("escalated"))} ${o.escalation_level}">↑${o.escalation_level}</span>` : ""}</td>
        <td>${sev(o.severity)} ${esc(tAlert(o.alert_type))}</td><td>${devLink(o.estate_code, o.device_code)}</td><td>${esc(o.assignee_name || o.assignee || "—")}</td>
        <td>${esc(tState(o.state))}</td><td>${which ? esc(t(which)) + "<br>" + fmtTime(due) : ""}</td>
        <td class="num" ${due ? `data-due="${esc(due)}"` : ""}></td>
        <td>${step && canStep(o) ? `<button data-step="${step}" data-id="${o.id}">${esc(t(step))}</button>` : ""}</td></tr>`;
    }), 'id="order-table"');
    tick();
  };
  const tick = countdown;
  $("#orders").onclick = async ev => { const b = ev.target.closest("button[data-step]"); if (!b) return; b.disabled = true;
    try { await api(`/work-orders/${b.dataset.id}/${b.dataset.step}`, { method: "POST" }); } catch (e) { notify(e); } await load(); };
  await load();
  onLive(view, debounce(() => load().catch(() => {}), 300));
  every(view, 15000, () => load().catch(() => {}));
  every(view, 1000, tick);
}

// ------------------------------------------------------------------ silences
async function renderSilences(view) {
  const $ = scoped(view);
  const estates = await api("/estates");
  const canAct = OPERATORS.includes(S.me.role);
  const load = async () => {
    const rows = await api("/silences");
    $("#silences").innerHTML = table(["estate", "device", "alert_type", "ends", "author", "reason", "action"], rows.map(s => `<tr data-silence-id="${s.id}">
      <td>${esc(s.estate_code)} ${esc(s.building_code || "")}</td><td>${esc(s.device_code || "*")}</td><td>${esc(s.alert_type || "*")}</td>
      <td>${fmtTime(s.ends_at)}</td><td>${esc(s.author)}</td><td>${esc(s.reason)}</td>
      <td>${canAct ? `<button data-expire="${s.id}">${esc(t("expire"))}</button>` : ""}</td></tr>`));
  };
  view.innerHTML = `<h1>${esc(t("silences"))}</h1>
    ${canAct ? `<form class="inline" id="silence-form">
      <label>${esc(t("estate"))}<select name="estate_code">${estates.map(e => `<option value="${esc(e.code)}">${esc(e.name)}</option>`).join("")}</select></label>
      <label>${esc(t("device"))}<input name="device_code" size="8"></label>
      <label>${esc(t("alert_type"))}<input name="alert_type" size="14"></label>
      <label>${esc(t("hours"))}<input name="hours" type="number" min="0.1" step="0.1" value="2" style="width:5em"></label>
      <label>${esc(t("reason"))}<input name="reason" required></label>
      <button class="primary" type="submit">${esc(t("add"))}</button></form>` : ""}
    <div id="silences"></div>`;
  if (canAct) $("#silence-form").onsubmit = async ev => { ev.preventDefault(); const f = new FormData(ev.target);
    const body = { estate_code: f.get("estate_code"), hours: Number(f.get("hours")), reason: f.get("reason") };
    if (f.get("device_code")) body.device_code = f.get("device_code"); if (f.get("alert_type")) body.alert_type = f.get("alert_type");
    try { await api("/silences", { method: "POST", json: body }); ev.target.reset(); } catch (e) { notify(e); } await load(); };
  $("#silences").onclick = async ev => { const b = ev.target.closest("button[data-expire]"); if (!b) return;
    await api(`/silences/${b.dataset.expire}/expire`, { method: "POST" }).catch(e => notify(e)); await load(); };
  await load();
}

// ------------------------------------------------------------------ inspectors
const noticeRows = ns => ns.map(n => `<tr data-notice="${esc(n.number)}"><td>${esc(n.number)}</td><td>${esc(n.estate_code)}</td><td>${esc(n.problem)}</td>
  <td class="${n.overdue ? "overdue" : ""}">${esc(n.deadline)}</td><td>${esc(tState(n.state))}</td></tr>`);
async function renderFire(view) {
  const $ = scoped(view);
  const load = async () => {
    const v = await api("/views/fire");
    const rows = list => list.map(r => `<tr data-alert-id="${r.alert_id}"><td>${sev(r.severity)} <a href="#/alert/${r.alert_id}">${esc(tAlert(r.alert_type))}</a></td>
      <td>${devLink(r.estate_code, r.device_code)}</td><td>${fmtTime(r.first_seen)}</td><td class="num">${fmtDur(r.open_s)}</td>
      <td class="num">${r.value ?? ""}</td></tr>`);
    const heads = ["type", "device", "since", "open_for", "value"];
    view.innerHTML = `<h1>${esc(t("fire"))}</h1>
      <div class="cards">${[["unconfirmed", v.unconfirmed_alarms], ["long_faults", v.long_faults], ["disabled_points", v.disabled_points], ["pressure", v.pressure_out_of_range], ["notices", v.notices]]
        .map(([k, l]) => `<div class="card"><div class="muted">${esc(t(k))}</div><div class="stat num ${l.length && k === "unconfirmed" ? "overdue" : ""}" data-count="${k}">${l.length}</div></div>`).join("")}</div>
      <h2>${esc(t("unconfirmed"))}</h2>${table(heads, rows(v.unconfirmed_alarms), 'id="fire-unconfirmed"')}
      <h2>${esc(t("long_faults"))}</h2>${table(heads, rows(v.long_faults))}
      <h2>${esc(t("disabled_points"))}</h2>${table(heads, rows(v.disabled_points))}
      <h2>${esc(t("pressure"))}</h2>${table(heads, rows(v.pressure_out_of_range))}
      <h2>${esc(t("notices"))}</h2>${table(["number", "estate", "problem", "deadline", "state"], noticeRows(v.notices))}`;
  };
  await load();
  onLive(view, debounce(() => load().catch(() => {}), 500));
  every(view, 30000, () => load().catch(() => {}));
}

async function renderElevators(view) {
  const $ = scoped(view);
  const v = await api("/views/elevators?days=30");
  view.innerHTML = `<h1>${esc(t("elevators"))} <span class="muted">${esc(t("period"))}: ${fmtTime(v.since)} –</span></h1>
    <h2>${esc(t("company"))}</h2>
    ${table(["company", "devices", "trapped", "median_ack", "median_arrive", "breaches", "fault_rate"], v.companies.map(c => `<tr data-company="${esc(c.maintenance_code || "")}">
      <td>${esc(c.maintenance_code || "—")}</td><td class="num">${c.elevators}</td><td class="num">${c.trapped_orders}</td>
      <td class="num">${fmtDur(c.median_ack_s)}</td><td class="num">${fmtDur(c.median_arrive_s)}</td>
      <td class="num ${c.breaches ? "overdue" : ""}">${c.breaches}</td><td class="num">${c.alerts_per_elevator}</td></tr>`), 'id="company-table"')}
    <h2>${esc(t("trapped"))}</h2>
    ${table(["work_order", "device", "assignee", "state", "since", "ack_time", "arrive_time"], v.trapped.map(o => `<tr data-order-id="${o.order_id}">
      <td>#${o.order_id} ${o.breached ? `<span class="overdue">${esc(t("overdue"))}</span>` : ""}</td><td>${devLink(o.estate_code, o.device_code)}</td>
      <td>${esc(o.assignee || "—")}</td><td>${esc(tState(o.state))}</td><td>${fmtTime(o.created_at)}</td>
      <td class="num">${fmtDur(o.ack_s)}</td><td class="num">${fmtDur(o.arrive_s)}</td></tr>`), 'id="trapped-table"')}
    <h2>${esc(t("overdue_items"))}</h2>
    ${table(["device", "item", "due", "company"], v.overdue.map(i => `<tr><td>${devLink(i.estate_code, i.device_code)}</td><td>${esc(tState(i.item))}</td>
      <td class="overdue">${esc(i.due)}</td><td>${esc(i.maintenance_code || "—")}</td></tr>`))}
    <h2>${esc(t("notices"))}</h2>${table(["number", "estate", "problem", "deadline", "state"], noticeRows(v.notices))}`;
}

// ------------------------------------------------------------------ notices (整改通知书)
const ISSUER = { fire_inspector: "fire", market_inspector: "market", housing_authority: "housing", street_office: "street" };
const RECIPIENT_ROLES = ["operator", "manager", "maintenance"];
const problemFields = () => `<fieldset class="problem">
    <label>${esc(t("problem"))}<input name="problem" required></label>
    <label>${esc(t("measures"))}<input name="measures" required></label>
    <label>${esc(t("responsible_person"))}<input name="responsible_person" required size="8"></label>
    <label>${esc(t("device"))}<input name="device" size="8"></label>
    <label>${esc(t("deadline"))}<input name="deadline" type="date" required></label></fieldset>`;
async function renderNotices(view) {
  const $ = scoped(view);
  const canIssue = S.me.role in ISSUER;
  const estates = canIssue ? await api("/estates") : [];
  view.innerHTML = `<h1>${esc(t("notices"))}</h1>
    ${canIssue ? `<form id="notice-form" class="stack"><h2>${esc(t("issue_notice"))}</h2>
      <div class="inline"><label>${esc(t("estate"))}<select name="estate">${estates.map(e => `<option value="${esc(e.code)}">${esc(e.name)}</option>`).join("")}</select></label>
      <label>${esc(t("basis"))}<input name="basis" size="24"></label></div>
      <div id="problems">${problemFields()}</div>
      <div class="inline"><button type="button" id="add-problem">${esc(t("add_problem"))}</button>
        <button class="primary" type="submit">${esc(t("issue"))}</button></div>
      <p class="error" id="notice-error"></p></form>` : ""}
    <h2>${esc(t("notice_list"))}</h2>
    <form class="inline" id="notice-filter"><label>${esc(t("state"))}<select name="state">
      ${["open", "closed", "all"].map(s => `<option value="${s}">${esc(tState(s === "open" ? "not_closed" : s))}</option>`).join("")}</select></label></form>
    <div id="notices"></div>`;
  const load = async () => {
    const st = new FormData($("#notice-filter")).get("state");
    const ns = (await api(`/notices?state=${st}&limit=200`)).items;
    $("#notices").innerHTML = table(["number", "estate", "problem", "deadline", "state", "supervised"], ns.map(n => `<tr data-notice="${esc(n.number)}">
      <td><a href="#/notice/${n.id}">${esc(n.number)}</a></td><td>${esc(n.estate_code)}</td>
      <td>${esc(n.problem)}${n.problems.length > 1 ? ` <span class="muted">+${n.problems.length - 1}</span>` : ""}</td>
      <td class="${n.overdue ? "overdue" : ""}">${esc(n.deadline)}</td><td>${esc(tNotice(n.state))}</td>
      <td>${n.supervised ? `<span class="overdue">${esc(t("supervised"))}</span>` : ""}</td></tr>`), 'id="notice-table"');
  };
  $("#notice-filter").onchange = () => load().catch(e => notify(e));
  if (canIssue) {
    $("#add-problem").onclick = () => $("#problems").insertAdjacentHTML("beforeend", problemFields());
    $("#notice-form").onsubmit = async ev => {
      ev.preventDefault();
      const f = ev.target, basis = f.elements.basis.value.trim();
      const problems = [...f.querySelectorAll("fieldset.problem")].map(fs => {
        const g = n => fs.querySelector(`[name=${n}]`).value.trim();
        const p = { problem: g("problem"), measures: g("measures"), responsible_person: g("responsible_person"), deadline: g("deadline"), basis };
        if (g("device")) p.device = g("device");
        return p;
      });
      try {
        const n = await api("/notices", { method: "POST", json: { estate: f.elements.estate.value, problems } });
        location.hash = `#/notice/${n.id}`;
      } catch (e) { $("#notice-error").textContent = problemText(e); }
    };
  }
  await load();
}

async function renderNotice(view, id) {
  const $ = scoped(view);
  const load = async () => {
    const n = await api(`/notices/${encodeURIComponent(id)}`);
    if (!view.isConnected) return;
    const issuer = ISSUER[S.me.role] === n.authority;
    const recipient = RECIPIENT_ROLES.includes(S.me.role) || (S.me.role === "street_office" && !issuer);
    const button = (step, seq, label) => `<button data-step="${step}" data-seq="${seq}">${esc(t(label || step))}</button>`;
    const steps = p => {
      if (recipient && ["issued", "reopened"].includes(p.state)) return button("rectify", p.seq);
      if (issuer && p.state === "rectified") return button("close", p.seq, "accept") + " " + button("reject", p.seq);
      // the look-back is on or after its date (the API refuses it earlier)
      if (issuer && p.state === "closed" && !p.looked_back_at && p.look_back_on <= dayIso(new Date())) return button("holds", p.seq) + " " + button("relapsed", p.seq);
      return "";
    };
    view.innerHTML = `<h1>${esc(n.number)} <span class="muted">${esc(n.estate_code)} · ${esc(tNotice(n.state))}</span></h1>
      <p>${esc(t("issued_by"))} ${esc(n.issued_by)} · ${fmtTime(n.issued_at)} ·
        ${esc(t("signed_for"))}: <span id="signed">${n.acknowledged_at ? fmtTime(n.acknowledged_at) : "—"}</span>
        ${recipient && !n.acknowledged_at ? `<button id="ack" class="primary">${esc(t("sign_for"))}</button>` : ""}</p>
      ${table(["seq", "problem", "measures", "responsible_person", "deadline", "state", "look_back", "action"], n.problems.map(p => `<tr data-seq="${p.seq}" data-state="${esc(p.state)}">
        <td>${p.seq}</td><td>${esc(p.problem)}${p.device_code ? `<br>${devLink(n.estate_code, p.device_code)}` : ""}</td><td>${esc(p.measures)}</td>
        <td>${esc(p.responsible_person || "—")}</td>
        <td class="${p.overdue ? "overdue" : ""}">${esc(p.deadline)}${p.supervised_at && p.state !== "closed" ? `<br><span class="overdue">${esc(t("supervised"))}</span>` : ""}</td>
        <td>${esc(tNotice(p.state))}${p.rectification ? `<br><span class="muted">${esc(p.rectification)}</span>` : ""}</td>
        <td>${esc(p.look_back_on || "")}</td><td>${steps(p)}</td></tr>`), 'id="problem-table"')}
      <h2>${esc(t("changes"))}</h2>
      ${table(["time", "seq", "change", "actor", "note"], n.events.map(e => `<tr><td>${fmtTime(e.at)}</td><td>${e.problem ?? ""}</td>
        <td>${esc(tNotice(e.change))}</td><td>${esc(e.actor)}</td><td>${esc(e.note)}</td></tr>`))}`;
    const ack = $("#ack");
    if (ack) ack.onclick = async () => { await api(`/notices/${id}/acknowledge`, { method: "POST" }).catch(e => notify(e)); await load(); };
  };
  const send = async (seq, step, body) => {
    try { await api(`/notices/${id}/problems/${seq}/${step}`, { method: "POST", json: body }); } catch (e) { notify(e); }
    await load();
  };
  view.onclick = async ev => {
    const b = ev.target.closest("button[data-step]"); if (!b) return;
    const step = b.dataset.step, seq = b.dataset.seq;
    if (!["rectify", "reject", "relapsed"].includes(step)) { b.disabled = true; return send(seq, step, {}); }
    // what was done or found (and, relapsed, the new deadline), asked where the button was
    const cell = b.closest("td");
    const due = new Date(Date.now() + 7 * 864e5).toISOString().slice(0, 10);
    cell.innerHTML = `<form class="inline step-note" data-step="${esc(step)}" data-seq="${esc(seq)}">
      <input name="note" required maxlength="2000" placeholder="${esc(t(step === "rectify" ? "what_was_done" : "what_was_found"))}">
      ${step === "relapsed" ? `<label>${esc(t("new_deadline"))}<input name="new_deadline" type="date" required value="${due}"></label>` : ""}
      <button type="submit" class="primary">${esc(t("save"))}</button></form>`;
    const f = cell.querySelector("form");
    f.elements.note.focus();
    f.onsubmit = e => {
      e.preventDefault();
      const body = { note: f.elements.note.value };
      if (f.elements.new_deadline) body.new_deadline = f.elements.new_deadline.value;
      send(seq, step, body);
    };
  };
  await load();
}

// ------------------------------------------------------------------ problem ledger (问题台账)
const dayIso = d => d.toLocaleDateString("sv-SE", { timeZone: "Asia/Shanghai" });  // YYYY-MM-DD in Shanghai
async function renderLedger(view) {
  const $ = scoped(view);
  const today = new Date(), first = `${dayIso(today).slice(0, 8)}01`;
  view.innerHTML = `<h1>${esc(t("ledger"))}</h1>
    <form class="inline" id="ledger-form">
      <label>${esc(t("from"))}<input type="date" name="start" value="${first}"></label>
      <label>${esc(t("to"))}<input type="date" name="end" value="${dayIso(today)}"></label>
      <label>${esc(t("authority"))}<select name="authority"><option value="">${esc(t("any"))}</option>
        ${["fire", "market", "housing", "street"].map(a => `<option value="${a}">${esc(t(`auth_${a}`))}</option>`).join("")}</select></label>
      <label>${esc(t("type"))}<select name="type"><option value="">${esc(t("any"))}</option>
        ${["elevator", "fire", "drainage", "water_supply", "general"].map(k => `<option value="${k}">${esc(t(k === "fire" ? "fire_kind" : k))}</option>`).join("")}</select></label>
      <label>${esc(t("state"))}<select name="state"><option value="">${esc(t("any"))}</option>
        <option value="open">${esc(tState("not_closed"))}</option><option value="closed">${esc(tNotice("closed"))}</option></select></label>
      <button type="button" class="primary" id="export-xlsx">${esc(t("export_xlsx"))}</button>
      <button type="button" id="export-csv">${esc(t("export_csv"))}</button></form>
    <div id="ledger"></div>`;
  const query = fmt => {
    const f = new FormData($("#ledger-form")), q = new URLSearchParams();
    const end = new Date(new Date(`${f.get("end")}T00:00:00+08:00`).getTime() + 864e5);  // the end day is included
    q.set("start", `${f.get("start")}T00:00:00+08:00`); q.set("end", end.toISOString());
    for (const k of ["authority", "type", "state"]) if (f.get(k)) q.set(k, f.get(k));
    if (fmt) q.set("format", fmt);
    return q;
  };
  const load = async () => {
    const rows = await api(`/problems?${query()}`);
    if (!view.isConnected) return;
    $("#ledger").innerHTML = table(["source", "number", "estate", "device", "problem", "responsible", "deadline", "state"], rows.map(r => `<tr data-ref="${esc(r.ref)}">
      <td>${esc(t(`source_${r.source}`))}</td><td>${esc(r.ref)}</td><td>${esc(r.estate_code)}</td><td>${r.device_code ? devLink(r.estate_code, r.device_code) : ""}</td>
      <td>${esc(r.problem)}</td><td>${esc(r.responsible || "")} ${esc(r.responsible_person || "")}</td>
      <td>${esc(r.due || "")}</td><td>${esc(r.open_at_end ? tState("not_closed") : tNotice("closed"))}${r.supervised ? ` <span class="overdue">${esc(t("supervised"))}</span>` : ""}</td></tr>`), 'id="ledger-table"');
  };
  const download = async fmt => {
    const r = await fetch(`/api/v1/problems?${query(fmt)}`, { headers: { Authorization: `Bearer ${S.token}` } });
    if (!r.ok) { notify(new ApiError(r.status, await r.json().catch(() => ({})))); return; }
    const f = new FormData($("#ledger-form"));
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await r.blob());
    a.download = `问题台账-${f.get("start")}-${f.get("end")}.${fmt}`;
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  };
  $("#ledger-form").onchange = () => load().catch(e => notify(e));
  $("#export-xlsx").onclick = () => download("xlsx");
  $("#export-csv").onclick = () => download("csv");
  await load();
}

// ------------------------------------------------------------------ lift maintenance records (维保)
const localNow = (minus = 0) => new Date(Date.now() - minus * 60e3).toLocaleString("sv-SE", { timeZone: "Asia/Shanghai" }).replace(" ", "T").slice(0, 16);
async function maintenanceSection(el, d) {
  const path = `/devices/${encodeURIComponent(d.estate_code)}/${encodeURIComponent(d.code)}/maintenance`;
  const mine = S.me.role === "maintenance" && d.maintenance_code === S.me.org_code;
  const [rec, cl] = await Promise.all([api(path), mine ? api(`${path}/checklist`) : null]);
  const today = dayIso(new Date());
  el.innerHTML = `<h2>${esc(t("maintenance_records"))}</h2>
    <p>${esc(t("last_maintenance"))} ${esc(rec.last_maintenance || "—")} ·
      ${esc(t("next_maintenance"))} <b id="maintenance-due" class="${rec.maintenance_due && rec.maintenance_due < today ? "overdue" : ""}">${esc(rec.maintenance_due || "—")}</b> ·
      ${esc(t("inspection_due"))} <b class="${rec.inspection_due && rec.inspection_due < today ? "overdue" : ""}">${esc(rec.inspection_due || "—")}</b></p>
    ${table(["ended", "technician", "result", "findings"], rec.visits.map(v => `<tr data-visit="${v.id}"><td>${fmtTime(v.ended_at)}</td><td>${esc(v.technician)}</td>
      <td>${Object.values(v.items).filter(x => x === "fault").length ? `<span class="overdue">${esc(tState("fault"))}</span>` : esc(tState("ok"))}</td>
      <td>${esc(v.findings)}${v.photos.length ? ` <span class="muted">📷${v.photos.length}</span>` : ""}</td></tr>`), 'id="visit-table"')}
    ${mine ? `<form id="visit-form" class="stack"><h2>${esc(t("record_visit"))}</h2>
      <label>${esc(t("technician"))}<input name="technician" required value="${esc(S.me.name)}"></label>
      <label>${esc(t("started"))}<input name="started_at" type="datetime-local" required value="${localNow(45)}"></label>
      <label>${esc(t("ended"))}<input name="ended_at" type="datetime-local" required value="${localNow()}"></label>
      <p class="muted">${esc(cl.title_zh)}</p>
      <div class="checklist">${cl.items.map(i => `<label class="item"><span>${esc(i.code)} ${esc(i.zh)}</span>
        <select name="item-${esc(i.code)}">${["ok", "adjusted", "fault"].map(r => `<option value="${r}">${esc(tState(r))}</option>`).join("")}</select></label>`).join("")}</div>
      <label>${esc(t("findings"))}<textarea name="findings" rows="3"></textarea></label>
      <label>${esc(t("photo"))}<input name="photo" type="file" accept="image/*,application/pdf" capture="environment"></label>
      <button class="primary" type="submit">${esc(t("submit"))}</button><p class="error" id="visit-error"></p></form>` : ""}`;
  if (!mine) return;
  el.querySelector("#visit-form").onsubmit = async ev => {
    ev.preventDefault();
    const f = ev.target, items = {};
    for (const s of f.querySelectorAll("select[name^=item-]")) items[s.name.slice(5)] = s.value;
    const body = { technician: f.elements.technician.value, started_at: f.elements.started_at.value,
      ended_at: f.elements.ended_at.value, items, findings: f.elements.findings.value };
    try {
      const v = await api(path, { method: "POST", json: body });
      const file = f.elements.photo.files[0];
      if (file) await api(`${path}/${v.id}/photos?filename=${encodeURIComponent(file.name)}`,
        { method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" } });
      await maintenanceSection(el, d);
    } catch (e) { el.querySelector("#visit-error").textContent = problemText(e); }
  };
}

// ------------------------------------------------------------------ an owner's home (分户账)
async function renderMyHome(view) {
  const $ = scoped(view);
  let h;
  try { h = await api("/fund/my-home"); } catch (e) {
    if (e.status === 404) { view.innerHTML = `<h1>${esc(t("myhome"))}</h1><p class="empty">${esc(t("no_home"))}</p>`; return; }
    throw e;
  }
  const now = new Date();
  view.innerHTML = `<h1>${esc(t("myhome"))} · ${esc(h.estate_code)} ${esc(h.building)}-${esc(h.unit)}</h1>
    ${h.accounts.map(a => `<div class="card"><h3>${esc(t("account"))} #${a.account_id} · ${esc(t("balance"))} <span class="num" data-balance="${a.account_id}">¥${yuan(a.home.balance_fen)}</span></h3>
      ${table(["year", "opening", "deposits", "interest", "repairs", "closing"], [`<tr><td>${a.year.year}</td><td class="num">${yuan(a.year.opening_fen)}</td>
        <td class="num">${yuan(a.year.deposits_fen)}</td><td class="num">${yuan(a.year.interest_fen)}</td><td class="num">${yuan(a.year.repairs_fen)}</td>
        <td class="num">${yuan(a.year.closing_fen)}</td></tr>`], `data-year="${a.account_id}"`)}
      ${table(["time", "kind", "amount"], a.home.movements.map(m => `<tr><td>${fmtTime(m.at)}</td><td>${esc(t(`mv_${m.kind}`))}${m.case_id ? ` #${m.case_id}` : ""}</td>
        <td class="num">${m.amount_fen < 0 ? "-" : ""}¥${yuan(Math.abs(m.amount_fen))}</td></tr>`))}</div>`).join("")}
    <h2>${esc(t("repairs"))}</h2>
    ${h.repairs.length ? h.repairs.map(r => `<div class="card" data-case="${r.case_id}"><h3>${esc(r.item)} · ¥${yuan(r.cost_fen)} · ${esc(r.contractor || "")}</h3>
      <div class="muted">${esc(r.work || "")} · ${esc(t("disclosed_until"))} ${fmtTime(r.disclosed_until)} · ${esc(t("objections"))} ${r.objections}</div>
      ${r.disclosed_until && new Date(r.disclosed_until) > now ? `<form class="inline objection"><input name="text" required placeholder="${esc(t("objection_hint"))}" size="30">
        <button type="submit">${esc(t("object"))}</button></form>` : ""}</div>`).join("") : `<p class="empty">${esc(t("none"))}</p>`}`;
  for (const f of view.querySelectorAll("form.objection")) f.onsubmit = async ev => {
    ev.preventDefault();
    const id = ev.target.closest("[data-case]").dataset.case;
    try { await api(`/fund/cases/${id}/objections`, { method: "POST", json: { text: ev.target.elements.text.value } }); await renderMyHome(view); }
    catch (e) { notify(e); }
  };
}

// ------------------------------------------------------------------ fund cases (业委会, 街道, 住建)
async function renderFundCases(view) {
  const role = S.me.role;
  const [page, overdue] = await Promise.all([api("/fund/cases?limit=100"),
    ["housing_authority", "street_office", "admin"].includes(role) ? api("/fund/applications/overdue") : Promise.resolve(null)]);
  const step = c => {
    if (c.state === "estimated" && FUND_APPROVERS.includes(role)) return `<button data-step="approve">${esc(t("fund_apply"))}</button>`;
    if (c.state === "repaired" && FUND_ACCEPTORS.includes(role)) return `<button data-step="accept">${esc(t("fund_accept"))}</button>`;
    return "";
  };
  view.innerHTML = `<h1>${esc(t("fundcases"))}</h1>
    ${overdue ? `<h2>${esc(t("overdue_applications"))}</h2>${table(["case", "estate", "item", "apply_by", "overdue"], overdue.map(o => `<tr><td>#${o.case_id}</td>
      <td>${esc(o.estate_code)}</td><td>${esc(tItem(o.item))}</td><td>${fmtTime(o.apply_by)}</td><td>${fmtDur(o.overdue_s)}</td></tr>`), 'id="overdue"')}` : ""}
    ${table(["case", "estate", "item", "state", "estimate", "approval", "action"], page.items.map(c => `<tr data-case="${c.id}"><td>#${c.id}${c.repair_first ? ` <span class="pill">${esc(t("repair_first"))}</span>` : ""}</td>
      <td>${esc(c.estate_code)} ${esc(c.building_code || "")}</td><td>${esc(tItem(c.item))}</td><td>${esc(t(`case_${c.state}`))}</td>
      <td class="num">${c.estimate_fen ? `¥${yuan(c.estimate_fen)}` : "—"}</td><td>${esc(c.approval ? t(`party_${c.approval.split(":")[0]}`) : "—")}</td>
      <td>${step(c)}</td></tr>`), 'id="fund-cases"')}`;
  for (const b of view.querySelectorAll("button[data-step]")) b.onclick = async () => {
    const id = b.closest("[data-case]").dataset.case, s = b.dataset.step;
    const json = s === "approve" ? { by: "authority" } : { note: t("fund_accept") };
    try { await api(`/fund/cases/${id}/${s}`, { method: "POST", json }); await renderFundCases(view); }
    catch (e) { notify(e); }
  };
}

// ------------------------------------------------------------------ owners (public)
function renderDisclosureChooser(view) {
  const $ = scoped(view);
  view.innerHTML = `<h1>${esc(t("disclosure"))}</h1><form class="inline" id="pick"><label>${esc(t("estate"))}<input name="estate" required placeholder="HXY"></label>
    <button class="primary">${esc(t("disclosure"))}</button></form>`;
  $("#pick").onsubmit = ev => { ev.preventDefault(); location.hash = `#/public/${encodeURIComponent(new FormData(ev.target).get("estate"))}`; };
}

async function renderPublic(view, estate) {
  renderHeader();
  if (!estate) return renderDisclosureChooser(view);
  const $ = scoped(view);
  const base = `/api/v1/public/estates/${encodeURIComponent(estate)}`;
  const get = async p => { const r = await fetch(base + p); const b = await r.json(); if (!r.ok) throw new ApiError(r.status, b); return b; };
  const thisYear = Number(new Date().toLocaleString("en-GB", { year: "numeric", timeZone: "Asia/Shanghai" }));
  let repairs, board;
  try { [repairs, board] = await Promise.all([get("/disclosure"), get("/noticeboard")]); }
  catch (e) { view.innerHTML = `<p class="error">${esc(e.status === 404 ? t("not_found") : e.message)}</p>`; return; }
  const buildings = [...new Set(repairs.flatMap(r => r.shares.map(s => s.building)))].sort();
  const party = a => t(`party_${a}`);
  view.innerHTML = `<h1>${esc(t("disclosure"))} · ${esc(board.estate_name || estate)}</h1><p class="muted">${esc(t("public_hint"))}</p>
    <form class="inline" id="find-home"><label>${esc(t("building"))}<select name="building">${buildings.map(b => `<option>${esc(b)}</option>`).join("")}</select></label>
      <label>${esc(t("unit"))}<input name="unit" size="6" placeholder="101"></label><button class="primary">${esc(t("find_home"))}</button></form>
    <h2>${esc(t("repairs"))}</h2>
    ${repairs.length ? repairs.map(r => `<div class="card" data-case="${r.case_id}"><h3>${esc(tItem(r.item))} · ${esc(r.building || t("shared"))} · ¥${yuan(r.cost_fen)}</h3>
      <div class="muted">${fmtTime(r.settled_at)} · ${esc(t("work"))}: ${esc(r.work || "—")} · ${esc(t("contractor"))}: ${esc(r.contractor || "—")}</div>
      <div class="muted">${esc(t("approval"))}: ${esc(party(r.approval))} · ${esc(t("invoice"))} ${esc(r.invoice_ref)} · ${esc(t("disclosed_until"))} ${fmtTime(r.disclosed_until)} · ${esc(t("objections"))} ${r.objections}</div>
      <p class="my-share" hidden></p>
      <details><summary>${esc(t("shares"))} (${r.shares.length})</summary>${table(["building", "unit", "share"], r.shares.map(s => `<tr data-home="${esc(s.building)}/${esc(s.unit)}"><td>${esc(s.building)}</td><td>${esc(s.unit)}</td><td class="num">¥${yuan(s.share_fen)}</td></tr>`))}</details></div>`).join("")
      : `<p class="empty">${esc(t("none"))}</p>`}
    <h2>${esc(t("fund_report"))} <select id="report-year">${[0, 1, 2, 3, 4].map(i => `<option>${thisYear - i}</option>`).join("")}</select></h2>
    <div id="report"></div>
    <h2>${esc(t("noticeboard"))}</h2>
    <p>${esc(t("property_firm"))}: ${esc(board.property_firm ? `${board.property_firm.name} ${board.property_firm.phone || ""}` : t("none"))}</p>
    ${table(["kind", "company", "phone", "devices"], board.companies.map(c => `<tr><td>${esc(t(c.kind === "fire" ? "fire_kind" : c.kind))}</td>
      <td>${esc(c.name)}</td><td>${esc(c.phone || "—")}</td><td class="num">${c.devices}</td></tr>`), 'id="companies"')}
    ${table(["device", "emergency_code", "registration_no", "last_maintenance", "inspection_due"], board.lifts.map(l => `<tr><td>${esc(l.code)} ${esc(l.location || "")}</td>
      <td class="num">${esc(l.emergency_code || "—")}</td><td>${esc(l.registration_no || "—")}</td><td>${esc(l.last_maintenance || "—")}</td>
      <td>${esc(l.inspection_due || "—")}</td></tr>`), 'id="lifts"')}
    <p id="lift-spending">${esc(t("lift_spending"))} ${esc(board.year)}: ¥${yuan(board.lift_spending_fen)}</p>`;
  const report = async () => {
    const year = $("#report-year").value;
    const rows = await get(`/fund-report?year=${encodeURIComponent(year)}`);
    const el = $("#report"); if (!el) return;
    el.innerHTML = table(["account", "opening", "deposits", "interest", "repairs", "closing"], rows.map(a => `<tr><td>${esc(a.name)}</td>
      <td class="num">${yuan(a.opening_fen)}</td><td class="num">${yuan(a.deposits_fen)}</td><td class="num">${yuan(a.interest_fen)}</td>
      <td class="num">${yuan(a.repairs_fen)}</td><td class="num">${yuan(a.closing_fen)}</td></tr>`), 'id="fund-report"');
  };
  $("#report-year").onchange = () => report().catch(e => { $("#report").textContent = problemText(e); });
  // find my home: its share of each repair, said in a sentence, and its row marked
  $("#find-home").onsubmit = ev => {
    ev.preventDefault();
    const f = new FormData(ev.target), home = `${f.get("building")}/${String(f.get("unit")).trim()}`;
    for (const card of view.querySelectorAll("[data-case]")) {
      const row = card.querySelector(`tr[data-home="${CSS.escape(home)}"]`), p = card.querySelector(".my-share");
      for (const r of card.querySelectorAll("tr.mine")) r.classList.remove("mine");
      p.hidden = false;
      if (row) { row.classList.add("mine"); p.textContent = `${t("my_share")} ${home}: ¥${row.cells[2].textContent.replace("¥", "")}`; }
      else p.textContent = `${home}: ${t("no_share")}`;
    }
  };
  await report();
}

// ------------------------------------------------------------------ start
$("#lang").onclick = () => { setLang(!LANG); route(); };
$("#logout").onclick = () => signOut();
$("#sound").onclick = () => enableSound() || renderHeader();
window.addEventListener("hashchange", route);
setLang(LANG === 1);
route();
