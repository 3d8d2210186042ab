// The fleet map: every machine as one cell of a canvas grid, coloured by a
// chosen metric (one compact /api/map answer, one canvas: cheap at 10,000
// machines). Hover names the machine and its value; click opens its page.
// With a label to group by, each group starts on a new row under its name,
// with the group's spread (p50 / p95 / max, /api/fleet/summary) beside it.
import { h, replace, setText, fmtNum } from '../dom.js';
import { get } from '../api.js';
import { formatter } from '../charts.js';

export const MAP_METRICS = [
  ['cpu', 'CPU'], ['memory', 'Memory'], ['swap_usage', 'Swap'], ['filesystem_usage', 'Fullest filesystem'],
  ['disk_utilization_percent', 'Disk utilisation'], ['pressure_cpu_some_avg10', 'CPU pressure'],
  ['pressure_memory_some_avg10', 'Memory pressure'], ['pressure_io_some_avg10', 'I/O pressure'], ['load1', 'Load'],
];

const GROUP_HEAD = 16;

/** Green → amber → red for 0..1; grey for no value. */
function colour(t) {
  if (!Number.isFinite(t)) return '#2b3550';
  const x = Math.max(0, Math.min(1, t));
  const stops = [[60, 207, 142], [245, 180, 74], [255, 107, 107]];
  const seg = x < 0.5 ? 0 : 1;
  const f = x < 0.5 ? x / 0.5 : (x - 0.5) / 0.5;
  const a = stops[seg]; const b = stops[seg + 1];
  const c = a.map((v, i) => Math.round(v + (b[i] - v) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

export function mountMap(el, ctx) {
  let metric = localStorage.getItem('sysmon.map.metric') || 'cpu';
  if (!MAP_METRICS.some(([k]) => k === metric)) metric = 'cpu';
  let group = localStorage.getItem('sysmon.map.group') || '';
  let data = null;
  let layout = null; // { cell, cols, pos: [[x, y]], byCell: Map }
  let destroyed = false;

  const select = h('select', { 'aria-label': 'Map metric', 'data-map-metric': '' },
    MAP_METRICS.map(([k, label]) => h('option', { value: k, selected: k === metric }, label)));
  const groupInput = h('input', { type: 'text', placeholder: 'group by label (e.g. role)', 'aria-label': 'Group by label', 'data-map-group': '', value: group, class: 'text' });
  const note = h('span', { class: 'note', 'data-map-note': '' });
  const canvas = h('canvas', { 'data-map': '', role: 'img', 'aria-label': 'Fleet map' });
  const tip = h('div', { class: 'chart-tip', 'data-map-tip': '' });
  const spread = h('div', { class: 'spread', 'data-map-spread': '' });
  replace(el,
    h('div', { class: 'toolbar' }, select, groupInput, note),
    h('div', { class: 'map-wrap' }, canvas, tip),
    h('div', { class: 'legend-bar' }, h('span', null, 'low'), h('i'), h('span', null, 'high'), h('span', { class: 'none' }, 'no value')),
    spread);

  select.addEventListener('change', () => { metric = select.value; localStorage.setItem('sysmon.map.metric', metric); load(); });
  let groupTimer = null;
  groupInput.addEventListener('input', () => {
    clearTimeout(groupTimer);
    groupTimer = setTimeout(() => { group = groupInput.value.trim(); localStorage.setItem('sysmon.map.group', group); load(); }, 300);
  });

  function scaleOf(d) {
    if (d.unit === 'percent') return (v) => v / 100;
    let hi = 0;
    for (const v of d.values) if (Number.isFinite(v) && v > hi) hi = v;
    return (v) => (hi > 0 ? v / hi : 0);
  }

  function draw() {
    if (!data) return;
    const n = data.ids.length;
    const width = Math.max(200, el.clientWidth || 800);
    const groups = data.groups && data.groups.length ? data.groups : [{ name: null, start: 0, count: n }];
    // Cell size: the whole fleet in about 420 px of height, 6..22 px per cell.
    let cell = Math.floor(Math.sqrt((width * 420) / Math.max(1, n)));
    cell = Math.max(6, Math.min(22, cell));
    const cols = Math.max(1, Math.floor(width / cell));
    const pos = new Array(n);
    const byCell = new Map();
    let y = 0;
    const heads = [];
    for (const g of groups) {
      if (g.name !== null) { heads.push([g.name, g.count, y]); y += GROUP_HEAD; }
      for (let k = 0; k < g.count; k++) {
        const i = g.start + k;
        const x = (k % cols) * cell;
        const yy = y + Math.floor(k / cols) * cell;
        pos[i] = [x, yy];
        byCell.set(`${Math.floor(yy / cell)}:${k % cols}:${y}`, i);
      }
      y += Math.ceil(g.count / cols) * cell + (g.name !== null ? 4 : 0);
    }
    const height = Math.max(cell, y);
    const dpr = window.devicePixelRatio || 1;
    canvas.style.width = width + 'px';
    canvas.style.height = height + 'px';
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    const c = canvas.getContext('2d');
    c.setTransform(dpr, 0, 0, dpr, 0, 0);
    c.clearRect(0, 0, width, height);
    const scale = scaleOf(data);
    const gap = cell >= 10 ? 2 : 1;
    for (let i = 0; i < n; i++) {
      const v = data.values[i];
      c.fillStyle = data.status[i] === 2 ? '#3a2230' : colour(v == null ? NaN : scale(v));
      c.fillRect(pos[i][0], pos[i][1], cell - gap, cell - gap);
      if (data.status[i] === 1) { c.strokeStyle = '#f5b44a'; c.strokeRect(pos[i][0] + 0.5, pos[i][1] + 0.5, cell - gap - 1, cell - gap - 1); }
    }
    c.font = '11px system-ui, sans-serif';
    c.fillStyle = '#8f9ab2';
    for (const [name, count, gy] of heads) c.fillText(`${name || '(no label)'} · ${count}`, 2, gy + 11);
    layout = { cell, cols, pos, heads, groups };
    canvas.dataset.cells = String(n);
    canvas.dataset.cell = String(cell);
    canvas.dataset.cols = String(cols);
  }

  /** The machine under a point of the canvas, or -1. */
  function at(px, py) {
    if (!layout || !data) return -1;
    const { cell, cols, pos } = layout;
    const col = Math.floor(px / cell);
    if (col >= cols) return -1;
    // Few groups: scan them; inside one, the cell is direct.
    for (const g of layout.groups) {
      if (!g.count) continue;
      const [, y0] = pos[g.start];
      const rows = Math.ceil(g.count / cols);
      if (py >= y0 && py < y0 + rows * cell) {
        const k = Math.floor((py - y0) / cell) * cols + col;
        return k < g.count ? g.start + k : -1;
      }
    }
    return -1;
  }

  /** For tests: the centre of a machine's cell in canvas coordinates. */
  canvas.cellCentre = (id) => {
    const i = data ? data.ids.indexOf(id) : -1;
    if (i < 0) return null;
    return { x: layout.pos[i][0] + layout.cell / 2, y: layout.pos[i][1] + layout.cell / 2 };
  };

  canvas.addEventListener('mousemove', (ev) => {
    const r = canvas.getBoundingClientRect();
    const i = at(ev.clientX - r.left, ev.clientY - r.top);
    if (i < 0) { tip.style.display = 'none'; canvas.style.cursor = ''; return; }
    const fmt = formatter(data.unit);
    const host = data.hosts[i];
    const v = data.values[i];
    tip.textContent = `${data.ids[i]}${host ? ' (' + host + ')' : ''} · ${v == null ? 'no value' : fmt(v)}${data.status[i] ? ' · ' + ['online', 'stale', 'offline'][data.status[i]] : ''}`;
    tip.dataset.machine = data.ids[i];
    tip.style.display = 'block';
    tip.style.left = Math.min(ev.clientX - r.left + 12, r.width - 160) + 'px';
    tip.style.top = (ev.clientY - r.top + 14) + 'px';
    canvas.style.cursor = 'pointer';
  });
  canvas.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
  canvas.addEventListener('click', (ev) => {
    const r = canvas.getBoundingClientRect();
    const i = at(ev.clientX - r.left, ev.clientY - r.top);
    if (i >= 0) ctx.navigate(ctx.href('machine', data.ids[i], ctx.range()));
  });

  function renderSpread(s) {
    const fmt = formatter(s.unit);
    const rows = [{ name: 'all online', ...s.spread }].concat(s.groups || []);
    replace(spread, h('table', { class: 'compact', 'data-table': 'spread' },
      h('thead', null, h('tr', null, h('th', null, s.group ? `by ${s.group}` : 'machines'), h('th', { class: 'num' }, 'machines'),
        h('th', { class: 'num' }, 'p50'), h('th', { class: 'num' }, 'p95'), h('th', { class: 'num' }, 'max'))),
      h('tbody', null, rows.map((g) => h('tr', { 'data-group': g.name },
        h('td', null, g.name === '' ? '(no label)' : g.name), h('td', { class: 'num' }, String(g.count)),
        h('td', { class: 'num' }, g.p50 == null ? '–' : fmt(g.p50)), h('td', { class: 'num' }, g.p95 == null ? '–' : fmt(g.p95)),
        h('td', { class: 'num' }, g.max == null ? '–' : fmt(g.max)))))));
  }

  async function load() {
    const params = { metric };
    if (group) params.group = group;
    try {
      const [d, s] = await Promise.all([get('/api/map', params), get('/api/fleet/summary', params)]);
      if (destroyed) return;
      data = d;
      setText(note, `${fmtNum(d.ids.length, 0)} machines${d.truncated ? ` of ${d.total}` : ''} · hover for the value, click to open`);
      draw();
      renderSpread(s);
      el.dataset.ready = '1';
    } catch (e) {
      if (!destroyed) setText(note, 'Could not load the map: ' + e.message);
    }
  }

  const ro = new ResizeObserver(() => { if (layout && Math.abs((el.clientWidth || 0) - parseFloat(canvas.style.width)) > 4) draw(); });
  ro.observe(el);
  load();
  const timer = setInterval(load, 10000);
  return {
    reload: load,
    destroy() { destroyed = true; clearInterval(timer); clearTimeout(groupTimer); ro.disconnect(); },
  };
}
