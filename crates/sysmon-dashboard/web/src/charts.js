// Charts: uPlot (from npm, embedded in the binary) for time series and the
// scatter, a few lines of canvas for the overview's sparklines.
import uPlot from './vendor/uPlot.esm.js';
import { fmtPct, fmtRate, fmtBytes, fmtNum, fmtTime } from './dom.js';

export const PALETTE = ['#5b9bff', '#f5b44a', '#3ccf8e', '#c58bff', '#ff7eb6', '#4fd1e0', '#ffd166', '#9ccc65',
  '#ff8a65', '#90a4ae', '#ba68c8', '#4db6ac', '#e57373', '#7986cb', '#aed581', '#f06292'];

/** A value formatter for an API unit. */
export function formatter(unit) {
  switch (unit) {
    case 'percent': return fmtPct;
    case 'bytes/s': return fmtRate;
    case 'bytes': return fmtBytes;
    default: return (v) => fmtNum(v, 2);
  }
}

function axisFormatter(unit) {
  const f = formatter(unit);
  if (unit === 'percent') return (u, vals) => vals.map((v) => (v == null ? '' : v.toFixed(0) + '%'));
  return (u, vals) => vals.map((v) => (v == null ? '' : f(v)));
}

const AXIS = { stroke: '#8f9ab2', grid: { stroke: '#222c42', width: 1 }, ticks: { stroke: '#222c42', width: 1 }, font: '11px system-ui, sans-serif' };

function alpha(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${a})`;
}

/**
 * A time-series chart in `el`.
 * lines: [{label, color, dash, band: true (draw min..max of this line), width}]
 * data: [ts[], ...per line: values[] (and, for band lines, then min[], max[])]
 * Hover shows values in the legend; drag-select zooms, double-click resets.
 */
export function timeChart(el, { lines, unit, height = 200, yMin, yMax, onZoom }) {
  const fmt = formatter(unit);
  const series = [{ value: (u, v) => (v == null ? '–' : fmtTime(v)) }];
  const bands = [];
  lines.forEach((l) => {
    const idx = series.length;
    series.push({
      label: l.label,
      stroke: l.color,
      width: l.width || 1.6,
      dash: l.dash,
      fill: l.fill ? alpha(l.color, 0.08) : undefined,
      value: (u, v) => (v == null ? '–' : fmt(v)),
      spanGaps: false,
      points: { show: false },
    });
    if (l.band) {
      series.push({ label: l.label + ' min', stroke: alpha(l.color, 0.0), width: 0, value: (u, v) => (v == null ? '–' : fmt(v)), points: { show: false }, show: true });
      series.push({ label: l.label + ' max', stroke: alpha(l.color, 0.0), width: 0, value: (u, v) => (v == null ? '–' : fmt(v)), points: { show: false }, show: true });
      bands.push({ series: [idx + 2, idx + 1], fill: alpha(l.color, l.bandAlpha || 0.14) });
    }
  });
  const width = Math.max(200, el.clientWidth || 600);
  const opts = {
    width,
    height,
    series,
    bands,
    scales: {
      x: { time: true },
      y: {
        range: (u, min, max) => {
          let lo = yMin !== undefined ? yMin : min;
          let hi = yMax !== undefined ? Math.max(yMax, max || 0) : max;
          if (lo === null || hi === null || !Number.isFinite(lo) || !Number.isFinite(hi)) return [0, 1];
          if (yMin === undefined) lo = Math.min(0, lo);
          if (hi - lo < 1e-9) hi = lo + 1;
          return [lo, hi + (yMax !== undefined ? 0 : (hi - lo) * 0.08)];
        },
      },
    },
    axes: [
      { ...AXIS },
      { ...AXIS, size: unit === 'percent' || unit === 'load' ? 44 : 70, values: axisFormatter(unit) },
    ],
    cursor: { drag: { x: true, y: false, setScale: true }, points: { size: 6 } },
    legend: { live: true },
    hooks: onZoom ? { setSelect: [(u) => { if (u.select.width > 0) onZoom(u); }] } : {},
  };
  const data = [[], ...series.slice(1).map(() => [])];
  const u = new uPlot(opts, data, el);
  // The band edges (min, max) show in the tooltip-like legend only as part of their line.
  const rows = u.root.querySelectorAll('.u-legend .u-series');
  series.forEach((s, i) => { if (/ (min|max)$/.test(s.label || '') && rows[i]) rows[i].style.display = 'none'; });
  const ro = new ResizeObserver(() => {
    const w = el.clientWidth;
    if (w > 0 && Math.abs(w - u.width) > 2) u.setSize({ width: w, height });
  });
  ro.observe(el);
  return {
    u,
    setData(d) {
      u.setData(d, true);
      // For tests and debugging: how much the chart holds.
      el.dataset.points = String(d[0].length);
      el.dataset.first = d[0].length ? String(d[0][0]) : '';
      // The last observed point (a forecast continuing the line does not count).
      let last = '';
      for (let i = d[0].length - 1; i >= 0; i--) {
        if (d.slice(1).some((col, k) => k < 3 && col[i] != null)) { last = String(d[0][i]); break; }
      }
      el.dataset.last = last;
    },
    destroy() { ro.disconnect(); u.destroy(); },
  };
}

/** Builds chart data from API series responses: one {ts,min,max,avg} per line, aligned on ts. */
export function alignSeries(list, bandFlags) {
  const all = new Set();
  for (const s of list) for (const t of s.ts) all.add(t);
  const ts = Array.from(all).sort((a, b) => a - b);
  const index = new Map(ts.map((t, i) => [t, i]));
  const cols = [ts];
  list.forEach((s, k) => {
    const avg = new Array(ts.length).fill(null);
    const mn = bandFlags && bandFlags[k] ? new Array(ts.length).fill(null) : null;
    const mx = mn ? new Array(ts.length).fill(null) : null;
    s.ts.forEach((t, i) => {
      const j = index.get(t);
      avg[j] = s.avg[i];
      if (mn) { mn[j] = s.min[i]; mx[j] = s.max[i]; }
    });
    cols.push(avg);
    if (mn) { cols.push(mn); cols.push(mx); }
  });
  return cols;
}

/** Draws a small trend line into a canvas. */
export function sparkline(canvas, values, color = PALETTE[0], max) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 120;
  const hgt = canvas.clientHeight || 28;
  if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(hgt * dpr); }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, hgt);
  const vals = values.filter((v) => Number.isFinite(v));
  canvas.dataset.points = String(vals.length);
  if (vals.length < 2) return;
  const hi = max !== undefined ? max : Math.max(...vals) || 1;
  const lo = max !== undefined ? 0 : Math.min(...vals);
  const span = hi - lo || 1;
  const step = w / (values.length - 1);
  ctx.beginPath();
  values.forEach((v, i) => {
    if (!Number.isFinite(v)) return;
    const x = i * step;
    const y = hgt - 2 - ((v - lo) / span) * (hgt - 4);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.4;
  ctx.stroke();
  ctx.lineTo(w, hgt);
  ctx.lineTo(0, hgt);
  ctx.closePath();
  ctx.fillStyle = alpha(color, 0.12);
  ctx.fill();
}

/**
 * CPU-vs-memory scatter: x = memory %, y = CPU %. points: [{machine_id, cpu, memory, anomaly, ts}].
 * Hover names the nearest point (machine id as text), drag zooms.
 */
export function scatterChart(el, points, height = 360) {
  const pts = points.slice().sort((a, b) => a.memory - b.memory);
  const xs = pts.map((p) => p.memory);
  const normal = pts.map((p) => (p.anomaly ? null : p.cpu));
  const anom = pts.map((p) => (p.anomaly ? p.cpu : null));
  const tip = document.createElement('div');
  tip.className = 'chart-tip';
  el.style.position = 'relative';
  el.appendChild(tip);
  const opts = {
    width: Math.max(300, el.clientWidth || 600),
    height,
    mode: 1,
    scales: { x: { time: false, range: [0, 100] }, y: { range: [0, 100] } },
    series: [
      { label: 'memory', value: (u, v) => (v == null ? '–' : fmtPct(v)) },
      { label: 'sample', stroke: PALETTE[0], fill: alpha(PALETTE[0], 0.5), paths: () => null, points: { show: true, size: 5, width: 1 }, value: (u, v) => (v == null ? '–' : fmtPct(v)) },
      { label: 'anomaly', stroke: '#ff6b6b', fill: '#ff6b6b', paths: () => null, points: { show: true, size: 8, width: 2 }, value: (u, v) => (v == null ? '–' : fmtPct(v)) },
    ],
    axes: [
      { ...AXIS, label: 'memory %', labelSize: 18, values: (u, v) => v.map((x) => x + '%') },
      { ...AXIS, label: 'CPU %', labelSize: 18, size: 50, values: (u, v) => v.map((x) => x + '%') },
    ],
    cursor: {
      drag: { x: true, y: true, uni: 20, setScale: true },
      points: { size: 9 },
    },
    hooks: {
      setCursor: [(u) => {
        const i = u.cursor.idx;
        if (i == null || u.cursor.left < 0) { tip.style.display = 'none'; return; }
        const p = pts[i];
        if (!p) { tip.style.display = 'none'; return; }
        tip.textContent = `${p.machine_id} · CPU ${fmtPct(p.cpu)} · mem ${fmtPct(p.memory)}${p.anomaly ? ' · anomaly' : ''} · ${fmtTime(p.ts)}`;
        tip.style.display = 'block';
        tip.style.left = Math.min(u.cursor.left + 60, el.clientWidth - 260) + 'px';
        tip.style.top = Math.max(0, u.cursor.top - 10) + 'px';
      }],
    },
  };
  const u = new uPlot(opts, [xs, normal, anom], el);
  el.dataset.points = String(xs.length);
  const ro = new ResizeObserver(() => {
    const w = el.clientWidth;
    if (w > 0 && Math.abs(w - u.width) > 2) u.setSize({ width: w, height });
  });
  ro.observe(el);
  return { u, destroy() { ro.disconnect(); u.destroy(); tip.remove(); } };
}
