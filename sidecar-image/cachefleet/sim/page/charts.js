// Line charts drawn as inline SVG: no library, no network. One function, lineChart, redraws a
// chart in place; each series is a <path data-series="NAME">, which the browser test reads.
"use strict";

const CachefleetCharts = (() => {
  const SVG = "http://www.w3.org/2000/svg";
  const MARGIN = { left: 70, right: 16, top: 14, bottom: 44 };

  function element(name, attributes, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceTicks(low, high, count) {
    const span = high - low || Math.abs(high) || 1;
    const raw = span / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => span / s <= count) || raw;
    const ticks = [];
    for (let t = Math.ceil(low / step) * step; t <= high + step * 1e-9; t += step) ticks.push(t);
    return ticks;
  }

  function logTicks(low, high) {
    // Powers of ten; with fewer than three decades on the axis, 2× and 5× as well.
    const multiples = Math.log10(high / low) < 3 ? [1, 2, 5] : [1];
    const ticks = [];
    for (let e = Math.floor(Math.log10(low)); e <= Math.ceil(Math.log10(high)); e++) {
      for (const m of multiples) {
        const t = m * Math.pow(10, e);
        if (t >= low * 0.999 && t <= high * 1.001) ticks.push(t);
      }
    }
    return ticks;
  }

  function formatTick(value) {
    const a = Math.abs(value);
    if (a >= 1e9) return `${+(value / 1e9).toPrecision(3)}G`;
    if (a >= 1e6) return `${+(value / 1e6).toPrecision(3)}M`;
    if (a >= 1e3) return `${+(value / 1e3).toPrecision(3)}k`;
    return `${+value.toPrecision(3)}`;
  }

  function scale(low, high, from, to, log) {
    if (log) {
      const a = Math.log10(low);
      const b = Math.log10(high);
      return (v) => from + ((Math.log10(Math.max(v, low)) - a) / (b - a || 1)) * (to - from);
    }
    return (v) => from + ((v - low) / (high - low || 1)) * (to - from);
  }

  // spec: {width, height, xLabel, yLabel, xLog, yLog, yMax, legend: "left"|"right", series: [{name, label, x, y, color, dash}],
  //        hlines: [{y, label, color}], vlines: [{x, label, color}]}
  function lineChart(svg, spec) {
    const WIDTH = spec.width || 640;
    const HEIGHT = spec.height || 300;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
    svg.setAttribute("role", "img");
    const finite = (v) => v !== null && Number.isFinite(v) && (!spec.yLog || v > 0);
    const xs = spec.series.flatMap((s) => s.x);
    const ys = spec.series.flatMap((s) => s.y.filter(finite)).concat(
      (spec.hlines || []).map((h) => h.y),
    );
    let xLow = Math.min(...xs);
    let xHigh = Math.max(...xs);
    let yLow = spec.yLog ? Math.min(...ys) / 1.5 : 0;
    let yHigh = spec.yMax !== undefined ? spec.yMax : Math.max(...ys) * 1.08;
    if (!(yHigh > yLow)) yHigh = yLow + 1;
    if (!(xHigh > xLow)) xHigh = xLow + 1;
    const x = scale(xLow, xHigh, MARGIN.left, WIDTH - MARGIN.right, spec.xLog);
    const y = scale(yLow, yHigh, HEIGHT - MARGIN.bottom, MARGIN.top, spec.yLog);
    const axes = element("g", { class: "axes" });
    const xTicks = spec.xLog ? logTicks(xLow, xHigh) : niceTicks(xLow, xHigh, 8);
    const yTicks = spec.yLog ? logTicks(yLow, yHigh) : niceTicks(yLow, yHigh, 6);
    for (const t of yTicks) {
      axes.appendChild(element("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(t), y2: y(t), class: "grid" }));
      axes.appendChild(element("text", { x: MARGIN.left - 6, y: y(t) + 4, "text-anchor": "end" }, formatTick(t)));
    }
    for (const t of xTicks) {
      axes.appendChild(element("line", { x1: x(t), x2: x(t), y1: MARGIN.top, y2: HEIGHT - MARGIN.bottom, class: "grid" }));
      axes.appendChild(element("text", { x: x(t), y: HEIGHT - MARGIN.bottom + 16, "text-anchor": "middle" }, formatTick(t)));
    }
    axes.appendChild(element("text", { x: (MARGIN.left + WIDTH - MARGIN.right) / 2, y: HEIGHT - 6, "text-anchor": "middle", class: "label" }, spec.xLabel));
    axes.appendChild(element("text", { x: 14, y: (MARGIN.top + HEIGHT - MARGIN.bottom) / 2, "text-anchor": "middle", class: "label", transform: `rotate(-90 14 ${(MARGIN.top + HEIGHT - MARGIN.bottom) / 2})` }, spec.yLabel));
    svg.appendChild(axes);
    for (const h of spec.hlines || []) {
      if (h.y < yLow || h.y > yHigh) continue;
      svg.appendChild(element("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(h.y), y2: y(h.y), stroke: h.color || "#b00", "stroke-dasharray": "6 4", class: "marker" }));
      svg.appendChild(element("text", { x: WIDTH - MARGIN.right - 4, y: y(h.y) - 5, "text-anchor": "end", class: "marker-label", fill: h.color || "#b00" }, h.label));
    }
    for (const v of spec.vlines || []) {
      if (v.x < xLow || v.x > xHigh) continue;
      svg.appendChild(element("line", { x1: x(v.x), x2: x(v.x), y1: MARGIN.top, y2: HEIGHT - MARGIN.bottom, stroke: v.color || "#555", "stroke-dasharray": "2 3", class: "marker" }));
      svg.appendChild(element("text", { x: x(v.x) + 4, y: HEIGHT - MARGIN.bottom - 6, class: "marker-label", fill: v.color || "#555" }, v.label));
    }
    const clip = (v) => Math.min(Math.max(v, MARGIN.top - 2), HEIGHT - MARGIN.bottom + 2);
    const legend = element("g", { class: "legend" });
    const legendX = spec.legend === "right" ? WIDTH - MARGIN.right - 230 : MARGIN.left + 10;
    spec.series.forEach((s, index) => {
      let d = "";
      let pen = "M";
      s.x.forEach((xv, i) => {
        const yv = s.y[i];
        if (!finite(yv)) {
          pen = "M";
          return;
        }
        d += `${pen}${x(xv).toFixed(2)},${clip(y(yv)).toFixed(2)}`;
        pen = "L";
      });
      const path = element("path", { d, fill: "none", stroke: s.color, "stroke-width": 2, "data-series": s.name });
      if (s.dash) path.setAttribute("stroke-dasharray", s.dash);
      svg.appendChild(path);
      const ly = MARGIN.top + 8 + index * 16;
      legend.appendChild(element("line", { x1: legendX, x2: legendX + 24, y1: ly, y2: ly, stroke: s.color, "stroke-width": 2, "stroke-dasharray": s.dash || "" }));
      legend.appendChild(element("text", { x: legendX + 30, y: ly + 4 }, s.label));
    });
    svg.appendChild(legend);
  }

  return { lineChart };
})();
