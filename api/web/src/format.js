// Pure formatting and domain helpers of the console (no DOM, no API): unit-tested by Vitest.
import { lang, t, tState, WORDS } from "./i18n.js";

export const SEV_RANK = { critical: 0, major: 1, warning: 2, info: 3 };
export const ZONE = "Asia/Shanghai";  // the estates' time, whatever the browser's own zone

// Intl formatters made once per language and kept: toLocaleString builds a new one each
// call (0.4 ms), which a board of 2,000 rows paid on every render.
const formatters = new Map();
function formatter(kind, make) {
  const key = `${kind}/${lang.value}`;
  if (!formatters.has(key)) formatters.set(key, make(lang.value ? "en-GB" : "zh-CN"));
  return formatters.get(key);
}
// times as the estates live them
const TIME = { year: "numeric", month: "numeric", day: "numeric", hour: "numeric", minute: "numeric", second: "numeric", hour12: false, timeZone: ZONE };
export const fmtTime = s => (s ? formatter("time", l => new Intl.DateTimeFormat(l, TIME)).format(new Date(s)) : "—");
// durations as people on duty say them: 10分43秒, 2小时5分, 3天4小时 (10m 43s in English)
export function fmtDur(sec) {
  if (sec === null || sec === undefined) return "—";
  const neg = sec < 0; sec = Math.abs(Math.round(sec));
  const d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600), m = Math.floor(sec % 3600 / 60), s = sec % 60;
  const [D, H, M, S] = lang.value ? ["d ", "h ", "m ", "s"] : ["天", "小时", "分", "秒"];
  const txt = (d ? `${d}${D}${h}${H}` : h ? `${h}${H}${m}${M}` : m ? `${m}${M}${s}${S}` : `${s}${S}`).trim();
  return neg ? `-${txt}` : txt;
}
export const yuan = fen => formatter("yuan", l => new Intl.NumberFormat(l, { minimumFractionDigits: 2, maximumFractionDigits: 2 })).format(fen / 100);
export const dayIso = d => d.toLocaleDateString("sv-SE", { timeZone: ZONE });  // YYYY-MM-DD in Shanghai
// a datetime-local value in Shanghai, `minus` minutes ago
export const localNow = (minus = 0, at = Date.now()) => new Date(at - minus * 60e3).toLocaleString("sv-SE", { timeZone: ZONE }).replace(" ", "T").slice(0, 16);

// A work order's next deadline: [which, when] (nothing once it is resolved).
export function nextDue(o) {
  if (["created", "dispatched", "reopened"].includes(o.state)) return ["ack_due", o.ack_due];
  if (o.state === "acknowledged") return o.arrive_due ? ["arrive_due", o.arrive_due] : ["resolve_due", o.resolve_due];
  if (o.state === "on_site") return ["resolve_due", o.resolve_due];
  return [null, null];
}
// "剩余 2分3秒" / "超时 1分" for a deadline at `now` (ms); soon = under two minutes left
export function dueText(due, now) {
  const left = (new Date(due) - now) / 1000;
  const text = left >= 0 ? (lang.value ? `${fmtDur(left)} ${t("remaining")}` : `${t("remaining")} ${fmtDur(left)}`) : `${t("overdue")} ${fmtDur(-left)}`;
  return { text, soon: left < 120 };
}
// the step a work order in this state takes next
export const ORDER_STEP = { created: "acknowledge", dispatched: "acknowledge", reopened: "acknowledge", acknowledged: "arrive", on_site: "resolve" };

// the metric to chart for an alert (null: an event-only device, nothing to draw)
const METRIC_OF = { elevator: "floor", fire: "pressure_mpa", drainage: "level_m", water_supply: "pressure_mpa" };
export function metricFor(alertType, kind, latest) {
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
  return latest && m in latest ? m : Object.keys(latest || {}).filter(k => !["ts", "seq"].includes(k))[0] || null;
}

// Evidence as people read it: each value becomes {text} (times local, yes/no), {rows}
// (a list of readings: a sub-table) or {kv} (a nested object).
const TIME_KEY = /(^|_)(ts|at|time|since|until)$|_at$/;
export function evidenceValue(k, v) {
  if (v === null || v === undefined) return { text: "—" };
  if (typeof v === "boolean") return { text: t(v ? "yes" : "no") };
  if (typeof v === "number" && TIME_KEY.test(k) && v > 1e9 && v < 4e9) return { text: fmtTime(new Date(v * 1000).toISOString()) };
  if (typeof v === "string" && TIME_KEY.test(k) && !isNaN(Date.parse(v))) return { text: fmtTime(v) };
  if (Array.isArray(v) && v.length && v.every(x => x && typeof x === "object" && !Array.isArray(x))) {
    const keys = [...new Set(v.flatMap(x => Object.keys(x)))];
    return { keys, rows: v.map(x => keys.map(key => evidenceValue(key, x[key]))) };
  }
  if (typeof v === "object") return { kv: evidenceRows(v) };
  return { text: String(v) };
}
export const evidenceRows = ev => Object.entries(ev || {}).map(([k, v]) => ({ key: k, value: evidenceValue(k, v) }));

// An API problem as a person reads it: the words for its type (no English in Chinese
// mode); the API's own detail is kept for the tooltip.
export function problemText(e) {
  const type = e && e.body && e.body.type ? String(e.body.type).split("/").pop() : "";
  const known = WORDS[`problem_${type}`];
  if (known) return known[lang.value];
  return lang.value ? (e.message || t("problem_unknown")) : t("problem_unknown");
}

// one server-sent event frame (the lines between two blank lines)
export function parseFrame(frame) {
  const ev = { event: "message", data: "", id: null };
  for (const line of frame.split("\n")) {
    if (line.startsWith("id: ")) ev.id = line.slice(4);
    else if (line.startsWith("event: ")) ev.event = line.slice(7);
    else if (line.startsWith("data: ")) ev.data += line.slice(6);
  }
  return ev;
}

// Alerts as incidents: one entry per incident (alerts without one stand alone), its lead
// the most severe, then the earliest; critical incidents first, then the newest.
export function incidents(alerts) {
  const by = new Map();
  for (const a of alerts) {
    const key = a.incident_id ?? `alert-${a.id}`;
    if (!by.has(key)) by.set(key, []);
    by.get(key).push(a);
  }
  const out = [...by.values()].map(list => {
    list.sort((a, b) => SEV_RANK[a.severity] - SEV_RANK[b.severity] || a.first_seen.localeCompare(b.first_seen) || a.id - b.id);
    const lead = list[0];
    return {
      key: lead.incident_id ?? `alert-${lead.id}`, lead, alerts: list,
      unacked: list.filter(a => !a.acknowledged_at && a.state === "open"),
      first_seen: list.reduce((m, a) => (a.first_seen < m ? a.first_seen : m), lead.first_seen),
    };
  });
  return out.sort((a, b) => SEV_RANK[a.lead.severity] - SEV_RANK[b.lead.severity] || b.first_seen.localeCompare(a.first_seen));
}

// CSV as Excel opens it: a byte-order mark (Chinese stays Chinese), quoted where needed
export function toCsv(heads, rows) {
  const cell = v => { const s = String(v ?? ""); return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s; };
  return "\ufeff" + [heads, ...rows].map(r => r.map(cell).join(",")).join("\r\n") + "\r\n";
}

// An incident's timeline: the alert's changes, its work order's events, the deadlines
// missed and who was told, in time order. Each entry: {at, source, what, who, detail}.
const DEADLINE_OF = { acknowledge: "ack_due", arrive: "arrive_due", resolve: "resolve_due" };
export function timeline(alert, order, words) {
  const out = alert.changes.map(c => ({ at: c.at, source: "alert", what: words.change(c.change), who: c.actor, severity: c.severity }));
  if (order) {
    for (const e of order.events || []) {
      if (e.change === "breach") continue;  // told below, with the deadline and who
      out.push({ at: e.at, source: "order", what: words.orderEvent(e.change), who: e.actor });
    }
    for (const b of order.breaches || []) {
      out.push({ at: b.breached_at, source: "order", breach: true,
        what: `${words.t("missed")} ${words.t(DEADLINE_OF[b.deadline] || b.deadline)}${b.escalated_to ? ` · ${words.t("escalated_to")} ${b.escalated_to}` : ""}`, who: "supervise" });
    }
    for (const d of order.deliveries || []) {
      out.push({ at: d.sent_at || d.created_at, source: "order", told: true,
        what: `${words.t("told")} ${d.org_code || d.target} ${words.t("via")} ${d.channel} · ${words.t(`delivery_${d.state}`)}`, who: d.target });
    }
  }
  return out.sort((a, b) => String(a.at).localeCompare(String(b.at)));
}

// the causes a false fire alarm is closed with (a fixed list: inspectors count them)
export const FALSE_CAUSES = ["cooking", "steam", "dust", "insects", "fault", "test", "malicious", "other"];
// a threshold rule's levels as a chart's lines: {value, label} ("警告 <")
export const levelLines = levels => levels.map(lv => ({
  value: lv.above ?? lv.below, label: `${tState(lv.severity)} ${lv.above !== null && lv.above !== undefined ? ">" : "<"}`,
}));
// the periods a statistics view offers, in days, and their names
export const PERIODS = [7, 30, 90, 365];
export const periodName = d => (d === 365 ? t("one_year") : lang.value ? `${d} days` : `${d}天`);
// a metric as the contract names it for people: 载重 (%), not load_pct (the code without one)
export const metricLabel = (m, code) => (m ? `${lang.value ? m.en : m.zh}${m.unit ? ` (${m.unit})` : ""}` : code);
