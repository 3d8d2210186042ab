// Overview: every machine with its status and current values, a trend line,
// and the fleet aggregate (average and max across machines).
import { h, replace, setText, fmtRate, fmtPct, fmtNum, fmtAgo, meter, updateMeter, statusBadge, empty } from '../dom.js';
import { get } from '../api.js';
import { timeChart, alignSeries, sparkline, PALETTE } from '../charts.js';

const SPARK_POINTS = 60;

export function mount(root, ctx) {
  let range = ctx.range;
  let destroyed = false;
  let rows = new Map(); // machine_id -> {tr, cells, spark: number[], now, status}
  let clockOffset = 0; // server now - local now (s)
  let charts = [];
  let reloadTimer = null;

  const cards = h('div', { class: 'cards' });
  const errorBox = h('div');
  const fleetCpu = h('div', { class: 'chart', 'data-chart': 'fleet-cpu' });
  const fleetMem = h('div', { class: 'chart', 'data-chart': 'fleet-memory' });
  const tableWrap = h('div', { class: 'scroll-x' });
  replace(root,
    h('div', { class: 'page-head' }, h('h1', null, 'Fleet overview'), h('span', { class: 'sub', id: 'overview-sub' })),
    errorBox,
    cards,
    h('div', { class: 'grid' },
      h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'Fleet CPU'), h('span', { class: 'note' }, 'average and busiest machine · drag to zoom')), fleetCpu),
      h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'Fleet memory'), h('span', { class: 'note' }, 'average and fullest machine')), fleetMem),
      h('section', { class: 'panel wide' }, h('div', { class: 'panel-head' }, h('h2', null, 'Machines'), h('span', { class: 'note', id: 'machines-note' })), tableWrap)));
  document.title = 'sysmon · overview';

  function card(key, value, sub, attrs) {
    return h('div', { class: 'card', ...attrs }, h('div', { class: 'k' }, key), h('div', { class: 'v' }, value), sub ? h('div', { class: 's' }, sub) : null);
  }

  function renderCards() {
    const list = Array.from(rows.values());
    const online = list.filter((r) => r.status === 'online');
    const count = (s) => list.filter((r) => r.status === s).length;
    const avg = (f) => (online.length ? online.reduce((a, r) => a + (r.now[f] || 0), 0) / online.length : NaN);
    const max = (f) => (online.length ? Math.max(...online.map((r) => r.now[f] || 0)) : NaN);
    const sum = (f) => online.reduce((a, r) => a + (r.now[f] || 0), 0);
    replace(cards,
      card('Machines online', h('span', { 'data-kpi': 'online' }, String(online.length)), `${count('stale')} stale · ${count('offline')} offline · ${list.length} known`),
      card('Fleet CPU', h('span', { 'data-kpi': 'cpu-avg' }, fmtPct(avg('cpu'))), 'max ' + fmtPct(max('cpu'))),
      card('Fleet memory', h('span', { 'data-kpi': 'mem-avg' }, fmtPct(avg('memory'))), 'max ' + fmtPct(max('memory'))),
      card('Disk I/O', fmtRate(sum('disk_read') + sum('disk_write')), `read ${fmtRate(sum('disk_read'))} · write ${fmtRate(sum('disk_write'))}`),
      card('Network', fmtRate(sum('net_sent') + sum('net_recv')), `sent ${fmtRate(sum('net_sent'))} · recv ${fmtRate(sum('net_recv'))}`));
  }

  function makeRow(m) {
    const id = m.now.machine_id;
    const cells = {
      status: h('td', null, statusBadge(m.status)),
      cpu: h('td', null, meter(m.now.cpu)),
      mem: h('td', null, meter(m.now.memory)),
      disk: h('td', { class: 'num' }),
      net: h('td', { class: 'num' }),
      load: h('td', { class: 'num' }),
      seen: h('td', { class: 'num' }),
      canvas: h('canvas', { width: 110, height: 28, style: 'width:110px;height:28px', 'aria-label': 'CPU trend' }),
    };
    const link = h('a', { href: ctx.href('machine', id, range), title: id }, id);
    const tr = h('tr', { 'data-machine': id },
      cells.status,
      h('td', { class: 'id' }, link),
      h('td', { class: 'host', title: m.now.hostname || '' }, m.now.hostname || '–'),
      cells.cpu, cells.mem, cells.disk, cells.net, cells.load,
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
    for (const c of charts) c.destroy();
    charts = [];
    const [cpu, mem] = await Promise.all([
      get('/api/fleet', { metric: 'cpu', range, agg: 'avg', points: 300 }),
      get('/api/fleet', { metric: 'memory', range, agg: 'avg', points: 300 }),
    ]);
    if (destroyed) return;
    for (const [el, s, label] of [[fleetCpu, cpu, 'CPU'], [fleetMem, mem, 'memory']]) {
      el.replaceChildren();
      if (!s.ts.length) { el.appendChild(empty('No data in this range', 'Samples appear here as machines report.')); continue; }
      const c = timeChart(el, {
        unit: 'percent', yMin: 0, yMax: 100, height: 190,
        lines: [{ label: 'average ' + label, color: PALETTE[0], fill: true }, { label: 'max ' + label, color: PALETTE[1] }],
      });
      c.setData([s.ts, s.avg, s.max]);
      charts.push(c);
    }
  }

  async function load() {
    clearTimeout(reloadTimer);
    errorBox.replaceChildren();
    try {
      const [ov] = await Promise.all([
        get('/api/overview', { range, spark: 'cpu', points: SPARK_POINTS }),
        loadFleet(),
      ]);
      if (destroyed) return;
      clockOffset = ov.now - Date.now() / 1000;
      rows = new Map();
      for (const m of ov.machines) rows.set(m.now.machine_id, makeRow(m));
      if (!rows.size) {
        replace(tableWrap, empty('No machines yet', 'Start sysmon-agent on a worker (or sysmon standalone here): machines appear as soon as their first sample is stored.'));
      } else {
        replace(tableWrap, h('table', { class: 'machines', 'data-table': 'machines' },
          h('thead', null, h('tr', null, h('th', null, 'Status'), h('th', null, 'Machine'), h('th', null, 'Host'), h('th', null, 'CPU'), h('th', null, 'Memory'),
            h('th', { class: 'num' }, 'Disk read / write'), h('th', { class: 'num' }, 'Net sent / recv'), h('th', { class: 'num' }, 'Load'), h('th', null, 'CPU trend'), h('th', { class: 'num' }, 'Last seen'))),
          h('tbody')));
        const body = tableWrap.querySelector('tbody');
        for (const r of rows.values()) body.appendChild(r.tr);
      }
      setText(document.getElementById('machines-note') || h('span'), `${rows.size} machines · trend over ${range}`);
      renderCards();
      if (!window.__sysmonFirstRender) {
        window.__sysmonFirstRender = performance.now();
        document.body.dataset.ready = 'overview';
      }
    } catch (e) {
      if (destroyed) return;
      replace(errorBox, h('div', { class: 'error-box', role: 'alert' }, 'Could not load the overview: ', e.message));
    }
  }

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
    renderCards();
    if (unknown) { clearTimeout(reloadTimer); reloadTimer = setTimeout(load, 1500); }
  });
  const ageTimer = setInterval(() => { for (const r of rows.values()) updateAge(r); }, 1000);
  const fleetTimer = setInterval(() => { loadFleet().catch(() => {}); }, 30000);

  load();
  return {
    setRange(r) { range = r; load(); },
    unmount() {
      destroyed = true;
      offBatch();
      clearInterval(ageTimer);
      clearInterval(fleetTimer);
      clearTimeout(reloadTimer);
      for (const c of charts) c.destroy();
    },
  };
}
