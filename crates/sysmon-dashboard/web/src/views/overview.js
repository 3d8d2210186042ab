// Overview: the fleet at a glance, built to stay cheap at 10,000 machines.
// Cards (from the server's fleet figures), the fleet CPU/memory charts, the
// fleet map (views/fleetmap.js), top-N panels, and the machine table: one
// page at a time, sorted, searched and filtered on the server
// (/api/overview with q, status, label, sort, order, limit, offset).
// Tick 2 to 5 machines to compare them (#/compare).
import { h, replace, setText, fmtRate, fmtPct, fmtNum, fmtAgo, meter, updateMeter, statusBadge, empty } from '../dom.js';
import { get } from '../api.js';
import { timeChart, sparkline, PALETTE, formatter } from '../charts.js';
import { mountMap } from './fleetmap.js';

const SPARK_POINTS = 60;
const PAGE_SIZES = [25, 50, 100, 250];
const TOP = [['cpu', 'CPU'], ['memory', 'Memory'], ['disk_write', 'Disk write'], ['net_recv', 'Network received']];
// Table columns: [label, sort key or null, class].
const COLUMNS = [
  ['', null, 'pick'], ['Status', 'status', ''], ['Machine', 'machine_id', ''], ['Host', 'hostname', ''],
  ['CPU', 'cpu', ''], ['Memory', 'memory', ''], ['Disk read / write', 'disk_write', 'num'],
  ['Net sent / recv', 'net_recv', 'num'], ['Load', 'load1', 'num'],
  ['CPU pressure', 'pressure_cpu_some_avg10', 'num'], ['Busiest container', 'container_cpu_percent', 'container'],
  ['CPU trend', null, ''], ['Last seen', 'last_seen', 'num'],
];

/**
 * The overview answer for `params`: the one boot.js started fetching while
 * the modules loaded, when it asked for exactly these parameters (the first
 * page of a fresh load), else a request of its own.
 */
function overviewAnswer(params) {
  const pre = window.__sysmonOverview;
  window.__sysmonOverview = null;
  if (pre && pre.qs === new URLSearchParams(params).toString()) {
    return pre.response
      .then((r) => {
        if (!r.ok) throw new Error('HTTP ' + r.status);
        window.__sysmonPrefetchUsed = (window.__sysmonPrefetchUsed || 0) + 1;
        return r.json();
      })
      // Errors and the login redirect are get()'s to handle.
      .catch(() => get('/api/overview', params));
  }
  return get('/api/overview', params);
}

export function mount(root, ctx) {
  let range = ctx.range;
  let destroyed = false;
  let rows = new Map(); // machine_id -> {tr, cells, spark: number[], now, status}
  let clockOffset = 0; // server now - local now (s)
  let charts = [];
  let reloadTimer = null;
  let seq = 0;
  let lastFleetTotal = 0;
  const picked = new Set(JSON.parse(sessionStorage.getItem('sysmon.compare') || '[]'));
  const table = {
    q: '', status: '', label: '',
    sort: localStorage.getItem('sysmon.sort') || 'machine_id',
    order: localStorage.getItem('sysmon.order') || 'asc',
    limit: Number(localStorage.getItem('sysmon.limit')) || 100,
    offset: 0,
  };
  if (!PAGE_SIZES.includes(table.limit)) table.limit = 100;

  const cards = h('div', { class: 'cards' });
  const errorBox = h('div');
  const fleetCpu = h('div', { class: 'chart', 'data-chart': 'fleet-cpu' });
  const fleetMem = h('div', { class: 'chart', 'data-chart': 'fleet-memory' });
  const mapEl = h('div', { class: 'fleet-map', 'data-panel': 'map' });
  // Fleet by label: one line per value of a label (server caps the groups).
  const groupChart = h('div', { class: 'chart', 'data-chart': 'fleet-groups' });
  const groupBy = h('input', { type: 'text', class: 'text', value: localStorage.getItem('sysmon.groupBy') || 'role', 'aria-label': 'Group by label', 'data-group-by': '' });
  const groupMetric = h('select', { 'aria-label': 'Grouped metric', 'data-group-metric': '' },
    [['cpu', 'CPU'], ['memory', 'Memory']].map(([v, l]) => h('option', { value: v }, l)));
  const groupStat = h('select', { 'aria-label': 'Statistic per group', 'data-group-stat': '' },
    [['p95', 'p95'], ['p50', 'median'], ['avg', 'average'], ['max', 'max']].map(([v, l]) => h('option', { value: v }, l)));
  const groupNote = h('span', { class: 'note', 'data-group-note': '' });
  let groupChartObj = null;
  const topEl = h('div', { class: 'tops' });
  const tableWrap = h('div', { class: 'scroll-x' });
  const search = h('input', { type: 'search', class: 'text', placeholder: 'search id or host', 'aria-label': 'Search machines', 'data-filter': 'q' });
  const statusSel = h('select', { 'aria-label': 'Status', 'data-filter': 'status' },
    h('option', { value: '' }, 'any status'), ['online', 'stale', 'offline'].map((s) => h('option', { value: s }, s)));
  const labelIn = h('input', { type: 'text', class: 'text', placeholder: 'label, e.g. role:db', 'aria-label': 'Label filter', 'data-filter': 'label' });
  const sizeSel = h('select', { 'aria-label': 'Rows per page', 'data-filter': 'limit' },
    PAGE_SIZES.map((n) => h('option', { value: n, selected: n === table.limit }, `${n} / page`)));
  const prev = h('button', { type: 'button', class: 'btn', 'data-page': 'prev' }, '‹ Prev');
  const next = h('button', { type: 'button', class: 'btn', 'data-page': 'next' }, 'Next ›');
  const pageInfo = h('span', { class: 'note', 'data-page-info': '' });
  const compareBtn = h('button', { type: 'button', class: 'btn primary', 'data-compare-go': '', disabled: true }, 'Compare');
  replace(root,
    h('div', { class: 'page-head' }, h('h1', null, 'Fleet overview'), h('span', { class: 'sub', id: 'overview-sub' })),
    errorBox,
    cards,
    h('div', { class: 'grid' },
      h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'Fleet CPU'), h('span', { class: 'note' }, 'average, median, p95 and busiest machine · drag to zoom')), fleetCpu),
      h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'Fleet memory'), h('span', { class: 'note' }, 'average, median, p95 and fullest machine')), fleetMem),
      h('section', { class: 'panel wide' }, h('div', { class: 'panel-head' }, h('h2', null, 'Fleet map')), mapEl),
      h('section', { class: 'panel wide' }, h('div', { class: 'panel-head' }, h('h2', null, 'Top machines'), h('span', { class: 'note' }, 'highest now')), topEl),
      h('section', { class: 'panel wide', 'data-panel': 'fleet-groups' },
        h('div', { class: 'panel-head' }, h('h2', null, 'Fleet by label'), groupNote),
        h('div', { class: 'toolbar' }, h('span', { class: 'note' }, 'group by'), groupBy, groupMetric, groupStat),
        groupChart),
      h('section', { class: 'panel wide' },
        h('div', { class: 'panel-head' }, h('h2', null, 'Machines'), h('span', { class: 'note', id: 'machines-note' })),
        h('div', { class: 'toolbar' }, search, statusSel, labelIn, sizeSel, prev, pageInfo, next, h('span', { class: 'spacer' }), compareBtn),
        tableWrap)));
  document.title = 'sysmon · overview';

  // Mounted once the first table page is shown (see load()).
  let map = null;

  function card(key, value, sub, attrs) {
    return h('div', { class: 'card', ...attrs }, h('div', { class: 'k' }, key), h('div', { class: 'v' }, value), sub ? h('div', { class: 's' }, sub) : null);
  }

  function renderCards(ov) {
    const f = ov.fleet || {};
    const c = ov.status_counts || { online: 0, stale: 0, offline: 0 };
    const filtered = ov.total !== ov.fleet_total;
    replace(cards,
      card('Machines online', h('span', { 'data-kpi': 'online' }, String(f.online || 0)), `${c.stale} stale · ${c.offline} offline · ${ov.total} ${filtered ? 'match of ' + ov.fleet_total : 'known'}`),
      card('Fleet CPU', h('span', { 'data-kpi': 'cpu-avg' }, fmtPct(f.cpu_avg)), `p50 ${fmtPct(f.cpu_p50)} · p95 ${fmtPct(f.cpu_p95)} · max ${fmtPct(f.cpu_max)}`),
      card('Fleet memory', h('span', { 'data-kpi': 'mem-avg' }, fmtPct(f.memory_avg)), `p50 ${fmtPct(f.memory_p50)} · p95 ${fmtPct(f.memory_p95)} · max ${fmtPct(f.memory_max)}`),
      card('Disk I/O', fmtRate((f.disk_read || 0) + (f.disk_write || 0)), `read ${fmtRate(f.disk_read || 0)} · write ${fmtRate(f.disk_write || 0)}`),
      card('Network', fmtRate((f.net_sent || 0) + (f.net_recv || 0)), `sent ${fmtRate(f.net_sent || 0)} · recv ${fmtRate(f.net_recv || 0)}`));
  }

  function updateCompare() {
    compareBtn.disabled = picked.size < 2 || picked.size > 5;
    setText(compareBtn, picked.size ? `Compare ${picked.size}` : 'Compare');
    compareBtn.title = 'Tick 2 to 5 machines to overlay their series';
    sessionStorage.setItem('sysmon.compare', JSON.stringify(Array.from(picked)));
  }
  compareBtn.addEventListener('click', () => {
    if (picked.size >= 2 && picked.size <= 5) ctx.navigate(ctx.href('compare', null, range, { ids: Array.from(picked).join(','), metric: 'cpu' }));
  });

  function makeRow(m) {
    const id = m.now.machine_id;
    const cells = {
      status: h('td', null, statusBadge(m.status)),
      cpu: h('td', null, meter(m.now.cpu)),
      mem: h('td', null, meter(m.now.memory)),
      disk: h('td', { class: 'num' }),
      net: h('td', { class: 'num' }),
      load: h('td', { class: 'num' }),
      psi: h('td', { class: 'num', 'data-col': 'pressure', title: 'CPU pressure stall: share of the last 10 s some task waited for a CPU (some avg10)' }),
      box: h('td', { class: 'container', 'data-col': 'container' }),
      seen: h('td', { class: 'num' }),
      canvas: h('canvas', { width: 110, height: 28, style: 'width:110px;height:28px', 'aria-label': 'CPU trend' }),
    };
    const pick = h('input', { type: 'checkbox', 'data-compare': id, 'aria-label': 'compare ' + id, checked: picked.has(id) });
    pick.addEventListener('change', () => {
      if (pick.checked) {
        if (picked.size >= 5) { pick.checked = false; return; }
        picked.add(id);
      } else picked.delete(id);
      updateCompare();
    });
    const link = h('a', { href: ctx.href('machine', id, range), title: id }, id);
    const tr = h('tr', { 'data-machine': id },
      h('td', { class: 'pick' }, pick),
      cells.status,
      h('td', { class: 'id' }, link),
      h('td', { class: 'host', title: m.now.hostname || '' }, m.now.hostname || '–'),
      cells.cpu, cells.mem, cells.disk, cells.net, cells.load, cells.psi, cells.box,
      h('td', { class: 'spark' }, cells.canvas),
      cells.seen);
    const row = { tr, cells, spark: (m.spark && m.spark.avg ? m.spark.avg.slice(-SPARK_POINTS) : []), now: m.now, status: m.status };
    fillRow(row);
    return row;
  }

  function fillRow(row) {
    const n = row.now;
    updateMeter(row.cells.cpu.firstChild, n.cpu);
    updateMeter(row.cells.mem.firstChild, n.memory);
    setText(row.cells.disk, `${fmtRate(n.disk_read)} / ${fmtRate(n.disk_write)}`);
    setText(row.cells.net, `${fmtRate(n.net_sent)} / ${fmtRate(n.net_recv)}`);
    setText(row.cells.load, fmtNum(n.load1, 2));
    // Absent (no PSI in the kernel, no cgroups sent): "–".
    setText(row.cells.psi, fmtPct(n.pressure_cpu));
    const b = n.busiest_container;
    setText(row.cells.box, b ? `${b.name} · ${fmtPct(b.cpu_percent)}` : '–');
    row.cells.box.title = b ? `${b.name} (${b.kind.replace(/_/g, ' ')}): ${fmtPct(b.cpu_percent)} of one core` : 'no cgroups reported';
    updateAge(row);
    sparkline(row.cells.canvas, row.spark, PALETTE[0], 100);
  }

  function updateAge(row) {
    const age = Date.now() / 1000 + clockOffset - row.now.timestamp;
    setText(row.cells.seen, fmtAgo(age));
    const status = age <= 120 ? 'online' : age <= 600 ? 'stale' : 'offline';
    if (status !== row.status) {
      row.status = status;
      replace(row.cells.status, statusBadge(status));
    }
  }

  async function loadFleet() {
    const [cpu, mem] = await Promise.all([
      get('/api/fleet', { metric: 'cpu', range, agg: 'avg', points: 300 }),
      get('/api/fleet', { metric: 'memory', range, agg: 'avg', points: 300 }),
    ]);
    if (destroyed) return;
    for (const c of charts) c.destroy();
    charts = [];
    for (const [el, s, label] of [[fleetCpu, cpu, 'CPU'], [fleetMem, mem, 'memory']]) {
      el.replaceChildren();
      if (!s.ts.length) { el.appendChild(empty('No data in this range', 'Samples appear here as machines report.')); continue; }
      const c = timeChart(el, {
        unit: 'percent', yMin: 0, yMax: 100, height: 190,
        lines: [{ label: 'average ' + label, color: PALETTE[0], fill: true },
          { label: 'p50', color: PALETTE[2], dash: [4, 3], width: 1.2 },
          { label: 'p95', color: PALETTE[3], width: 1.2 },
          { label: 'max ' + label, color: PALETTE[1] }],
      });
      const none = s.ts.map(() => null);
      c.setData([s.ts, s.avg, s.p50 || none, s.p95 || none, s.max]);
      charts.push(c);
    }
  }

  async function loadGroups() {
    const key = groupBy.value.trim();
    const metric = groupMetric.value;
    const stat = groupStat.value;
    if (!key) { replace(groupChart, empty('No label', 'Type a label key, e.g. role.')); return; }
    const g = await get('/api/fleet', { metric, range, group: key, points: 200 });
    if (destroyed || key !== groupBy.value.trim() || metric !== groupMetric.value || stat !== groupStat.value) return;
    if (groupChartObj) { groupChartObj.destroy(); groupChartObj = null; }
    groupChart.replaceChildren();
    const labelled = g.groups.filter((x) => x.other || x.name !== '');
    setText(groupNote, labelled.length
      ? `${stat} of ${metric} per ${key} · ${g.groups_total} groups · ${fmtNum(g.machines, 0)} machines`
      : '');
    if (!labelled.length) { groupChart.appendChild(empty(`No machine has the label “${key}”`, 'Agents set labels in [agent] labels.')); return; }
    // One time axis: the union of every group's buckets (they share the width).
    const ts = Array.from(new Set(g.groups.flatMap((x) => x.ts))).sort((a, b) => a - b);
    if (!ts.length) { groupChart.appendChild(empty('No data in this range', 'Samples appear here as machines report.')); return; }
    const at = new Map(ts.map((t, i) => [t, i]));
    const lines = [];
    const data = [ts];
    g.groups.forEach((x, i) => {
      const name = x.other ? `other (${x.other_groups} groups)` : (x.name === '' ? `no ${key}` : x.name);
      lines.push({ label: `${name} (${fmtNum(x.machines, 0)})`, color: PALETTE[i % PALETTE.length], width: 1.4, dash: x.other ? [4, 3] : undefined });
      const col = ts.map(() => null);
      const vals = x[stat] || [];
      x.ts.forEach((t, k) => { col[at.get(t)] = vals[k] ?? null; });
      data.push(col);
    });
    groupChartObj = timeChart(groupChart, { unit: g.unit, yMin: 0, yMax: g.unit === 'percent' ? 100 : undefined, height: 220, lines });
    groupChartObj.setData(data);
  }
  function reloadGroups() {
    localStorage.setItem('sysmon.groupBy', groupBy.value.trim());
    loadGroups().catch((e) => { if (!destroyed) replace(groupChart, h('div', { class: 'error-box', role: 'alert' }, 'Could not load the grouped chart: ', e.message)); });
  }
  groupBy.addEventListener('change', reloadGroups);
  groupMetric.addEventListener('change', reloadGroups);
  groupStat.addEventListener('change', reloadGroups);

  async function loadTop() {
    const lists = await Promise.all(TOP.map(([m]) => get('/api/top', { metric: m, n: 8 })));
    if (destroyed) return;
    replace(topEl, TOP.map(([m, label], k) => {
      const fmt = formatter(lists[k].unit);
      return h('div', { class: 'top', 'data-top': m },
        h('h3', null, label),
        lists[k].machines.length
          ? h('table', { class: 'compact' }, h('tbody', null, lists[k].machines.map((x) => h('tr', { 'data-machine-top': x.machine_id },
            h('td', { class: 'id' }, h('a', { href: ctx.href('machine', x.machine_id, range), title: x.machine_id }, x.machine_id)),
            h('td', { class: 'num' }, fmt(x.value))))))
          : empty('No values', 'No machine reports this yet.'));
    }));
  }

  function headerRow() {
    return h('tr', null, COLUMNS.map(([label, key, cls]) => {
      if (!key) return h('th', { class: cls }, label);
      const active = table.sort === key;
      const th = h('th', {
        class: ['sortable', cls].filter(Boolean).join(' '), 'data-sort': key, tabindex: 0,
        'aria-sort': active ? (table.order === 'asc' ? 'ascending' : 'descending') : 'none',
      }, label);
      const go = () => {
        if (table.sort === key) table.order = table.order === 'asc' ? 'desc' : 'asc';
        else { table.sort = key; table.order = ['machine_id', 'hostname', 'status'].includes(key) ? 'asc' : 'desc'; }
        localStorage.setItem('sysmon.sort', table.sort);
        localStorage.setItem('sysmon.order', table.order);
        table.offset = 0;
        loadTable();
      };
      th.addEventListener('click', go);
      th.addEventListener('keydown', (e) => { if (e.key === 'Enter') go(); });
      return th;
    }));
  }

  async function loadTable() {
    const my = ++seq;
    const params = { range, spark: 'cpu', points: SPARK_POINTS, sort: table.sort, order: table.order, limit: table.limit, offset: table.offset };
    if (table.q) params.q = table.q;
    if (table.status) params.status = table.status;
    if (table.label) params.label = table.label;
    const ov = await overviewAnswer(params);
    if (destroyed || my !== seq) return false;
    clockOffset = ov.now - Date.now() / 1000;
    lastFleetTotal = ov.fleet_total;
    rows = new Map();
    for (const m of ov.machines) rows.set(m.now.machine_id, makeRow(m));
    if (!ov.fleet_total) {
      replace(tableWrap, empty('No machines yet', 'Start sysmon-agent on a worker (or sysmon standalone here): machines appear as soon as their first sample is stored.'));
    } else if (!rows.size) {
      replace(tableWrap, empty('No machine matches', 'Change the search or the filters.'));
    } else {
      replace(tableWrap, h('table', { class: 'machines', 'data-table': 'machines', 'data-total': ov.total, 'data-offset': ov.offset },
        h('thead', null, headerRow()), h('tbody')));
      const body = tableWrap.querySelector('tbody');
      for (const r of rows.values()) body.appendChild(r.tr);
    }
    // Live updates: everything while the whole fleet fits on the page (a new
    // machine then shows up), else this page's machines only (a large fleet's
    // whole batch is megabytes a second).
    const everything = ov.fleet_total < table.limit;
    ctx.live.connect(null, everything ? null : Array.from(rows.keys()).filter((id) => !id.includes(',')));
    const first = ov.total ? ov.offset + 1 : 0;
    const last = ov.offset + ov.machines.length;
    setText(pageInfo, `${fmtNum(first, 0)}–${fmtNum(last, 0)} of ${fmtNum(ov.total, 0)}`);
    prev.disabled = ov.offset <= 0;
    next.disabled = last >= ov.total;
    setText(document.getElementById('machines-note') || h('span'), `${ov.total} machines · trend over ${range}`);
    renderCards(ov);
    if (!window.__sysmonFirstRender) window.__sysmonFirstRender = performance.now();
    return true;
  }

  async function load() {
    clearTimeout(reloadTimer);
    errorBox.replaceChildren();
    try {
      // The table first and alone: its request is not queued behind the
      // charts' (a browser opens 6 connections per host) nor does the server
      // compute fleet-wide series and the map beside it. The rest follows.
      let failed = null;
      await loadTable().catch((e) => { failed = e; });
      if (destroyed) return;
      if (!map) map = mountMap(mapEl, { ...ctx, range: () => range });
      await Promise.all([loadFleet(), loadTop(), loadGroups()]);
      if (failed) throw failed;
      if (destroyed) return;
      document.body.dataset.ready = 'overview';
    } catch (e) {
      if (destroyed) return;
      replace(errorBox, h('div', { class: 'error-box', role: 'alert' }, 'Could not load the overview: ', e.message));
    }
  }

  function reloadTable() {
    loadTable().catch((e) => { if (!destroyed) replace(errorBox, h('div', { class: 'error-box', role: 'alert' }, 'Could not load the machines: ', e.message)); });
  }
  let searchTimer = null;
  search.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { table.q = search.value.trim(); table.offset = 0; reloadTable(); }, 250);
  });
  statusSel.addEventListener('change', () => { table.status = statusSel.value; table.offset = 0; reloadTable(); });
  labelIn.addEventListener('change', () => { table.label = labelIn.value.trim(); table.offset = 0; reloadTable(); });
  sizeSel.addEventListener('change', () => { table.limit = Number(sizeSel.value); localStorage.setItem('sysmon.limit', table.limit); table.offset = 0; reloadTable(); });
  prev.addEventListener('click', () => { table.offset = Math.max(0, table.offset - table.limit); reloadTable(); });
  next.addEventListener('click', () => { table.offset += table.limit; reloadTable(); });
  updateCompare();

  const offBatch = ctx.live.on('batch', (ev) => {
    let unknown = false;
    for (const n of ev.machines) {
      const row = rows.get(n.machine_id);
      if (!row) { unknown = true; continue; }
      if (n.timestamp <= row.now.timestamp) continue;
      row.now = n;
      row.spark.push(n.cpu);
      if (row.spark.length > SPARK_POINTS) row.spark.shift();
      fillRow(row);
      row.tr.classList.remove('flash');
      void row.tr.offsetWidth;
      row.tr.classList.add('flash');
    }
    // A machine not on this page: only a new one that would fit needs a reload.
    if (unknown && lastFleetTotal < table.limit && !table.q && !table.status && !table.label) {
      clearTimeout(reloadTimer);
      reloadTimer = setTimeout(reloadTable, 1500);
    }
  });
  const ageTimer = setInterval(() => { for (const r of rows.values()) updateAge(r); }, 1000);
  const fleetTimer = setInterval(() => { loadFleet().catch(() => {}); loadTop().catch(() => {}); loadGroups().catch(() => {}); }, 30000);
  const tableTimer = setInterval(() => { if (!document.hidden) reloadTable(); }, 30000);

  load();
  return {
    setRange(r) { range = r; load(); },
    unmount() {
      destroyed = true;
      offBatch();
      if (map) map.destroy();
      clearInterval(ageTimer);
      clearInterval(fleetTimer);
      clearInterval(tableTimer);
      clearTimeout(reloadTimer);
      clearTimeout(searchTimer);
      for (const c of charts) c.destroy();
      if (groupChartObj) groupChartObj.destroy();
    },
  };
}
