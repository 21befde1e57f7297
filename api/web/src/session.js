// The console's session: the login's bearer token, the API under /api/v1, the live stream,
// the alarm sound and the toast. One reactive object (S),
// so the header and every view follow it.
import { reactive } from "vue";
import { t } from "./i18n.js";
import { parseFrame, problemText } from "./format.js";

export const OPERATORS = ["admin", "operator", "manager"];  // who signs for alerts (签收)
export const S = reactive({ token: sessionStorage.getItem("token"), me: null, live: false, sound: false, lsn: null, rules: null, estates: null });
export const toast = reactive({ text: "", title: "" });

export class ApiError extends Error {
  constructor(status, body) { super(body.detail || body.title || String(status)); this.status = status; this.body = body; }
}

// Every item of a paged list: the API's pages followed (next_cursor) to the end.
export async function apiAll(path) {
  const sep = path.includes("?") ? "&" : "?";
  let page = await api(path), items = page.items;
  while (page.next_cursor) {
    page = await api(`${path}${sep}cursor=${encodeURIComponent(page.next_cursor)}`);
    items = items.concat(page.items);
  }
  return items;
}

export async function api(path, opts = {}) {
  const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
  if (S.token) headers.Authorization = `Bearer ${S.token}`;
  // read your writes behind a read replica: reads carry the position of our last write
  if (S.lsn && !opts.method) headers["X-Estate-After-Lsn"] = S.lsn;
  let body = opts.body;
  if (opts.json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(opts.json); }
  const r = await fetch(`/api/v1${path}`, { method: opts.method || "GET", headers, body });
  const lsn = r.headers.get("X-Estate-Lsn"); if (lsn) S.lsn = lsn;
  if (r.status === 401 && S.token) { signOut(t("session_over")); throw new ApiError(401, {}); }
  if (r.status === 204) return null;
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, answer);
  return answer;
}
// the public pages: no login
export async function publicApi(path) {
  const r = await fetch(`/api/v1/public${path}`);
  const b = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, b);
  return b;
}

// A refused action in Chinese by the problem's type, the API's detail as the tooltip;
// never a browser alert().
export function notify(e) {
  toast.text = problemText(e);
  toast.title = e instanceof ApiError ? (e.body.detail || "") : String(e.message || "");
  clearTimeout(notify.timer); notify.timer = setTimeout(() => { toast.text = ""; }, 8000);
}

// ------------------------------------------------------------------ login
export async function signIn(user, pass) {
  const form = new URLSearchParams({ username: user, password: pass });
  const r = await fetch("/api/v1/auth/token", { method: "POST", body: form });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, body);
  S.token = body.access_token; sessionStorage.setItem("token", S.token);
  enableSound();  // a click started this: browsers allow sound from here on
}
export function signOut(message) {
  if (S.token) fetch("/api/v1/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${S.token}` } }).catch(() => {});
  S.token = null; S.me = null; S.rules = null; S.estates = null; sessionStorage.removeItem("token"); stopStream();
  if (message) sessionStorage.setItem("message", message);
  location.hash = "#/login";
}
// A wall screen stays logged in for its shift: every 5 minutes the login is refreshed (the
// API keeps the same token alive up to ESTATE_API_SESSION_MAX_H after the password); a
// refused refresh signs out through api()'s 401 like any other call.
setInterval(() => { if (S.token) api("/auth/refresh", { method: "POST" }).catch(() => {}); }, 5 * 60 * 1000);

// the rules by id (two rules may raise one alert type: their titles tell them apart; a
// threshold rule's levels are drawn on its metric's chart), read once per login
export async function rulesById() {
  if (!S.rules) S.rules = Object.fromEntries((await api("/rules")).map(r => [r.rule_id, r]));
  return S.rules;
}

// the estates' names by code, read once per login, so every list names the estate
export function loadEstateNames() {
  if (S.estates) return;
  S.estates = {};
  api("/estates").then(list => { S.estates = Object.fromEntries(list.map(e => [e.code, e.name])); }).catch(() => {});
}
export const estateName = code => (S.estates && S.estates[code]) || code;

// ------------------------------------------------------------------ sound
// Sound is for the people who act on an alert: those who sign for it (OPERATORS, as the
// API's acknowledge). An inspector or a street office watching the same board cannot
// silence it, so it would ring all shift.
export const actsOnAlerts = () => !!S.me && OPERATORS.includes(S.me.role);
let audio = null;
export function enableSound() {
  try { audio = audio || new AudioContext(); audio.resume(); S.sound = true; } catch (e) { S.sound = false; }
}
export function beep() {  // two short tones: the critical-alert signal
  if (!S.sound || !audio || !actsOnAlerts()) return;
  const at0 = audio.currentTime;
  for (const [f, at] of [[880, 0], [660, 0.25]]) {
    const o = audio.createOscillator(), g = audio.createGain();
    o.frequency.value = f; g.gain.value = 0.15; o.connect(g); g.connect(audio.destination);
    o.start(at0 + at); o.stop(at0 + at + 0.2);
  }
}

// ------------------------------------------------------------------ live stream
// GET /api/v1/stream read with fetch (EventSource cannot send the Authorization header),
// resumed with Last-Event-ID; views also poll, in case the stream breaks.
const listeners = new Set();
export function onLive(f) { listeners.add(f); return () => listeners.delete(f); }
let stream = null;
export function startStream() {
  if (stream || !S.token) return;
  const ctrl = new AbortController(); stream = ctrl;
  (async () => {
    let lastId = null;
    while (!ctrl.signal.aborted) {
      try {
        const headers = { Authorization: `Bearer ${S.token}`, Accept: "text/event-stream" };
        if (lastId) headers["Last-Event-ID"] = lastId;
        const r = await fetch("/api/v1/stream", { headers, signal: ctrl.signal });
        if (!r.ok) throw new Error(r.status);
        S.live = true;
        const reader = r.body.getReader(), dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const frame = buf.slice(0, i); buf = buf.slice(i + 2);
            const ev = parseFrame(frame);
            if (ev.id) lastId = ev.id;
            if (ev.data) {
              window.__liveEvents = (window.__liveEvents || 0) + 1;
              let body = null; try { body = JSON.parse(ev.data); } catch (e) { /* keep null */ }
              for (const f of listeners) f(ev.event, body);
            }
          }
        }
      } catch (e) { if (ctrl.signal.aborted) return; }
      S.live = false;
      await new Promise(res => setTimeout(res, 3000));
    }
  })();
}
export function stopStream() { if (stream) stream.abort(); stream = null; S.live = false; }
