// A small SVG line chart: min–max band and mean for numeric rollups, share-true for
// boolean ones; drag across it to zoom (the caller refetches the range), double-click to
// reset. No third-party code: the console has no build step.
"use strict";
function drawChart(svg, series, opts) {
  const W = svg.clientWidth || 800, H = svg.clientHeight || 280, L = 50, R = 10, T = 10, B = 24;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.innerHTML = "";
  const ns = "http://www.w3.org/2000/svg";
  const el = (name, attrs, text) => { const e = document.createElementNS(ns, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]); if (text !== undefined) e.textContent = text;
    svg.appendChild(e); return e; };
  const t0 = opts.start.getTime(), t1 = opts.end.getTime();
  const pts = series.points.map(p => ({ t: new Date(p[0]).getTime(), v: p.slice(1).map(Number) }));
  let lo = Infinity, hi = -Infinity;
  for (const p of pts) for (const v of p.v) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (series.kind === "boolean") { lo = 0; hi = 1; }
  if (!pts.length) { lo = 0; hi = 1; }
  if (hi === lo) { hi += 1; lo -= 1; }
  for (const m of opts.marks || []) { if (m.value !== undefined) { lo = Math.min(lo, m.value); hi = Math.max(hi, m.value); } }
  const x = ts => L + (ts - t0) / (t1 - t0) * (W - L - R);
  const y = v => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4;
    el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#2a3744" });
    el("text", { x: 4, y: y(v) + 4 }, v.toFixed(hi - lo < 0.5 ? 3 : hi - lo < 5 ? 2 : 0));
  }
  for (let i = 0; i <= 4; i++) {
    const ts = t0 + (t1 - t0) * i / 4;
    el("text", { x: Math.min(x(ts), W - 90), y: H - 6 }, new Date(ts).toLocaleString(LANG ? "en-GB" : "zh-CN",
      { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", timeZone: "Asia/Shanghai" }));
  }
  if (series.kind === "numeric" && pts.length) {
    const band = pts.map(p => `${x(p.t)},${y(p.v[2])}`).concat(pts.slice().reverse().map(p => `${x(p.t)},${y(p.v[0])}`));
    el("polygon", { points: band.join(" "), fill: "rgba(90,169,255,.2)", stroke: "none" });
    el("polyline", { points: pts.map(p => `${x(p.t)},${y(p.v[1])}`).join(" "), fill: "none", stroke: "#5aa9ff", "stroke-width": 2, class: "mean" });
  } else if (pts.length) {
    el("polyline", { points: pts.map(p => `${x(p.t)},${y(p.v[0])}`).join(" "), fill: "none", stroke: "#3ecf8e", "stroke-width": 2, class: "mean" });
  }
  for (const m of opts.marks || []) {
    if (m.at) { const mx = x(new Date(m.at).getTime()); el("line", { x1: mx, x2: mx, y1: T, y2: H - B, stroke: "#ff4d4f", "stroke-dasharray": "4 3" });
      el("text", { x: mx + 3, y: T + 12 }, m.label || ""); }
  }
  if (!pts.length) el("text", { x: W / 2 - 40, y: H / 2 }, t("none"));
  // drag to zoom
  const sel = el("rect", { x: 0, y: T, width: 0, height: H - T - B, fill: "rgba(255,255,255,.12)" });
  let from = null;
  const px = ev => { const r = svg.getBoundingClientRect(); return (ev.clientX - r.left) * W / r.width; };
  svg.onmousedown = ev => { from = px(ev); sel.setAttribute("x", from); sel.setAttribute("width", 0); };
  svg.onmousemove = ev => { if (from === null) return; const to = px(ev);
    sel.setAttribute("x", Math.min(from, to)); sel.setAttribute("width", Math.abs(to - from)); };
  svg.onmouseup = ev => { if (from === null) return; const to = px(ev); const a = Math.min(from, to), b = Math.max(from, to); from = null;
    if (b - a < 5) { sel.setAttribute("width", 0); return; }
    const inv = v => new Date(t0 + (v - L) / (W - L - R) * (t1 - t0));
    opts.onZoom(inv(Math.max(a, L)), inv(Math.min(b, W - R))); };
  svg.ondblclick = () => opts.onReset();
}
