// What a view starts it also stops: timers and live-stream listeners end with the view.
import { onUnmounted } from "vue";
import { onLive } from "./session.js";

export function every(ms, f) {
  const h = setInterval(() => { Promise.resolve(f()).catch(() => {}); }, ms);
  onUnmounted(() => clearInterval(h));
}
// reload on live events, at most once per `ms` (a storm of events is one reload)
export function onLiveEvents(f, ms = 300) {
  let h = null;
  const off = onLive(() => { clearTimeout(h); h = setTimeout(() => Promise.resolve(f()).catch(() => {}), ms); });
  onUnmounted(() => { off(); clearTimeout(h); });
}
export const enc = encodeURIComponent;
export const deviceHref = (estate, code) => `#/device/${enc(estate)}/${enc(code)}`;
// hand the browser a file to save (an export of what is on screen)
export function saveFile(name, text, type = "text/csv;charset=utf-8") {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = name;
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}
