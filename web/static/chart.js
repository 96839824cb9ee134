// chart.js: a small line chart in SVG for the operator console, with no
// dependency (no build step, no CDN; the CSP allows only our own scripts).
// A classic script loaded before admin.js; it defines one global, `chart`.
//
// chart.line(svg, options) draws into an <svg> element (its children are
// replaced): one path per series over a time axis, a y axis from 0, and a
// dashed vertical line per mark (an admission-rate or state change). The
// caller gives the <svg> its role="img" and aria-label, and the numbers as
// text beside it: the picture is for eyes, the label and text for everyone.
"use strict";

const chart = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 640;
  const H = 190;
  const pad = { left: 52, right: 10, top: 22, bottom: 26 };

  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // niceMax rounds a maximum up to 1, 2 or 5 times a power of ten, so the
  // axis reads 0, 50, 100 and not 0, 43.5, 87.
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  const clock = (t) => new Date(t * 1000).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const day = (t) => new Date(t * 1000).toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });

  // line options:
  //   from, to: the time axis (Unix seconds)
  //   series: [{ points: [[t, v], ...], className, gap }]: gap (seconds) breaks
  //           the line where samples are further apart (no sample: no line)
  //   marks:  [{ t, label, className }]
  function line(svg, { from, to, series, marks }) {
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
    const span = Math.max(1, to - from);
    const plotW = W - pad.left - pad.right;
    const plotH = H - pad.top - pad.bottom;
    let max = 0;
    for (const s of series) for (const [t, v] of s.points) if (t >= from && t <= to && v > max) max = v;
    const top = niceMax(max);
    const x = (t) => pad.left + ((t - from) / span) * plotW;
    const y = (v) => pad.top + plotH - (Math.max(0, v) / top) * plotH;

    const parts = [];
    for (const f of [0, 0.5, 1]) {
      const v = top * f;
      parts.push(el("line", { x1: pad.left, x2: W - pad.right, y1: y(v), y2: y(v), class: "grid" }));
      parts.push(el("text", { x: pad.left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, number.format(v)));
    }
    const fmt = span > 6 * 3600 ? day : clock;
    parts.push(el("text", { x: pad.left, y: H - 8, class: "axis", "text-anchor": "start" }, fmt(from)));
    parts.push(el("text", { x: W - pad.right, y: H - 8, class: "axis", "text-anchor": "end" }, fmt(to)));

    for (const m of marks || []) {
      if (m.t < from || m.t > to) continue;
      const mx = x(m.t);
      parts.push(el("line", { x1: mx, x2: mx, y1: pad.top - 4, y2: pad.top + plotH, class: "mark " + (m.className || "") }));
      const anchor = mx > W - 120 ? "end" : "start";
      parts.push(el("text", { x: anchor === "end" ? mx - 3 : mx + 3, y: pad.top - 8, class: "mark-label", "text-anchor": anchor }, m.label));
    }

    for (const s of series) {
      let d = "";
      let prev = null;
      for (const [t, v] of s.points) {
        if (t < from || t > to || typeof v !== "number" || !Number.isFinite(v)) continue;
        const move = prev === null || (s.gap && t - prev > s.gap);
        d += (move ? "M" : "L") + x(t).toFixed(1) + " " + y(v).toFixed(1);
        prev = t;
      }
      if (d) parts.push(el("path", { d, class: "series " + (s.className || "") }));
    }
    svg.replaceChildren(...parts);
  }

  return { line };
})();
