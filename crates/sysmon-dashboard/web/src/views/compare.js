// Compare: 2 to 5 machines, one metric, their series overlaid on one chart
// (#/compare?ids=a,b,c&metric=cpu&range=1h). Machines are added by search
// (/api/machines?q=…) and removed with their chip.
import { h, replace, setText, empty } from '../dom.js';
import { get, machinePath } from '../api.js';
import { timeChart, alignSeries, PALETTE } from '../charts.js';

const METRICS = [['cpu', 'CPU'], ['memory', 'Memory'], ['load1', 'Load'], ['disk_read', 'Disk read'], ['disk_write', 'Disk write'],
  ['net_sent', 'Network sent'], ['net_recv', 'Network received'], ['swap', 'Swap']];
const MAX = 5;

export function mount(root, ctx) {
  let range = ctx.range;
  let ids = (ctx.params.get('ids') || '').split(',').map((s) => s.trim()).filter(Boolean).slice(0, MAX);
  ids = Array.from(new Set(ids));
  let metric = ctx.params.get('metric') || 'cpu';
  if (!METRICS.some(([k]) => k === metric)) metric = 'cpu';
  let chart = null;
  let destroyed = false;

  const chips = h('div', { class: 'chips', 'data-compare-chips': '' });
  const select = h('select', { 'aria-label': 'Metric', 'data-compare-metric': '' },
    METRICS.map(([k, l]) => h('option', { value: k, selected: k === metric }, l)));
  const add = h('input', { type: 'search', class: 'text', placeholder: 'add a machine (search)', 'aria-label': 'Add a machine', list: 'compare-options', 'data-compare-add': '' });
  const options = h('datalist', { id: 'compare-options' });
  const chartEl = h('div', { class: 'chart', 'data-chart': 'compare' });
  const note = h('span', { class: 'note' });
  const errorBox = h('div');
  replace(root,
    h('div', { class: 'page-head' }, h('h1', null, 'Compare machines'), h('span', { class: 'sub' }, `2 to ${MAX} machines, one metric, one chart`)),
    errorBox,
    h('section', { class: 'panel' },
      h('div', { class: 'toolbar' }, select, add, options, note),
      chips,
      chartEl));
  document.title = 'sysmon · compare';

  function go() {
    ctx.navigate(ctx.href('compare', null, range, { ids: ids.join(','), metric }));
  }

  function renderChips() {
    replace(chips, ids.map((id, k) => h('span', { class: 'chip', 'data-chip': id, style: `border-color:${PALETTE[k]}` },
      h('a', { href: ctx.href('machine', id, range) }, id),
      h('button', { type: 'button', 'aria-label': 'remove ' + id, onclick: () => { ids = ids.filter((x) => x !== id); go(); } }, '×'))));
  }

  select.addEventListener('change', () => { metric = select.value; go(); });
  let searchTimer = null;
  add.addEventListener('input', () => {
    clearTimeout(searchTimer);
    const q = add.value.trim();
    searchTimer = setTimeout(async () => {
      if (!q) return;
      try {
        const list = await get('/api/machines', { q, limit: 20 });
        replace(options, list.machines.map((m) => h('option', { value: m.machine_id }, m.hostname || '')));
        if (list.machines.some((m) => m.machine_id === q)) pick(q);
      } catch { /* the chart's own errors say it */ }
    }, 250);
  });
  add.addEventListener('change', () => pick(add.value.trim()));
  function pick(id) {
    if (!id || ids.includes(id)) return;
    if (ids.length >= MAX) { setText(note, `at most ${MAX} machines`); return; }
    ids = ids.concat([id]);
    add.value = '';
    go();
  }

  async function load() {
    renderChips();
    errorBox.replaceChildren();
    if (chart) { chart.destroy(); chart = null; }
    chartEl.replaceChildren();
    if (ids.length < 2) {
      chartEl.appendChild(empty('Pick at least two machines', 'Tick them in the overview table, or add them here by name.'));
      document.body.dataset.ready = 'compare';
      return;
    }
    const results = await Promise.all(ids.map((id) => get(machinePath(id) + '/series', { metric, range, points: 300 })
      .then((s) => ({ id, s }), (e) => ({ id, e }))));
    if (destroyed) return;
    const ok = results.filter((r) => r.s);
    const bad = results.filter((r) => r.e);
    if (bad.length) replace(errorBox, h('div', { class: 'error-box', role: 'alert' }, bad.map((r) => `${r.id}: ${r.e.message}`).join(' · ')));
    if (!ok.length) { document.body.dataset.ready = 'compare'; return; }
    chart = timeChart(chartEl, {
      unit: ok[0].s.unit, height: 320,
      yMin: ok[0].s.unit === 'percent' ? 0 : undefined, yMax: ok[0].s.unit === 'percent' ? 100 : undefined,
      lines: ok.map((r) => ({ label: r.id, color: PALETTE[ids.indexOf(r.id)] })),
    });
    chart.setData(alignSeries(ok.map((r) => r.s)));
    chartEl.dataset.lines = String(ok.length);
    setText(note, `${ok.length} machines · ${metric} over ${range}`);
    document.body.dataset.ready = 'compare';
  }

  load().catch((e) => { if (!destroyed) replace(errorBox, h('div', { class: 'error-box', role: 'alert' }, 'Could not load: ', e.message)); });
  return {
    setRange(r) { range = r; load(); },
    unmount() { destroyed = true; clearTimeout(searchTimer); if (chart) chart.destroy(); },
  };
}
