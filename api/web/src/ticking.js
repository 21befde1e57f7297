// Counters that move each second (剩余 2分3秒, 10分43秒 ago) as directives: one timer writes
// the text of every counter on the page, so a board of 2,000 rows does not re-render
// 4,000 components each second (that took 80-400 ms a tick; this takes a few).
import { dueText, fmtDur } from "./format.js";

const counters = new Map();  // element → how it is written
function tick() { const now = Date.now(); for (const [el, write] of counters) write(el, now); }
setInterval(tick, 1000);

function counter(write) {
  const set = (el, value) => { el.dataset.value = value; write(el, Date.now()); };
  return {
    mounted(el, b) { counters.set(el, write); set(el, b.value); },
    updated(el, b) { if (b.value !== b.oldValue) set(el, b.value); else write(el, Date.now()); },
    unmounted(el) { counters.delete(el); },
  };
}
// v-due="deadline": the time left, or overdue by (red under two minutes); data-due carries it
export const vDue = counter((el, now) => {
  const d = dueText(el.dataset.value, now);
  el.dataset.due = el.dataset.value;
  el.textContent = d.text;
  el.classList.toggle("overdue", d.soon);
});
// v-since="start": how long ago; data-since carries it
export const vSince = counter((el, now) => {
  el.dataset.since = el.dataset.value;
  el.textContent = fmtDur((now - new Date(el.dataset.value)) / 1000);
});
