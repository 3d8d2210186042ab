// One machine: CPU total and per core, memory and swap, disk and network
// rates, load, filesystems, top processes (sortable), its alerts and
// anomalies, and the 5-minute forecast drawn as a dashed continuation.
// The latest snapshot's host details, each panel hidden when the snapshot
// has none: pressure stall, disks, TCP states, containers (top cgroups),
// temperatures.
import { h, replace, setText, fmtRate, fmtPct, fmtNum, fmtBytes, fmtAgo, fmtTime, fmtDuration, meter, statusBadge, empty } from '../dom.js';
import { get, machinePath } from '../api.js';
import { timeChart, alignSeries, PALETTE } from '../charts.js';

const LIVE_APPEND_MAX_RANGE = { '5m': 300, '15m': 900, '1h': 3600 };

function sortable(columns, rowsOf, initial) {
  // columns: [{key, label, num, fmt, cls}]; returns {el, setRows}
  let sortKey = initial.key;
  let desc = initial.desc;
  let data = [];
  const tbody = h('tbody');
  const ths = columns.map((c) => h('th', {
    class: 'sortable' + (c.num ? ' num' : ''),
    'data-key': c.key,
    scope: 'col',
    tabindex: 0,
    onclick: () => { if (sortKey === c.key) desc = !desc; else { sortKey = c.key; desc = !!c.num; } render(); },
  }, c.label));
  const table = h('table', { class: 'procs' }, h('thead', null, h('tr', null, ths)), tbody);
  function render() {
    ths.forEach((th, i) => th.setAttribute('aria-sort', columns[i].key === sortKey ? (desc ? 'descending' : 'ascending') : 'none'));
    const sorted = data.slice().sort((a, b) => {
      const x = a[sortKey];
      const y = b[sortKey];
      const nx = x === null || x === undefined;
      const ny = y === null || y === undefined;
      if (nx || ny) return nx === ny ? 0 : nx ? 1 : -1;
      const r = typeof x === 'string' ? x.localeCompare(y) : x - y;
      return desc ? -r : r;
    });
    tbody.replaceChildren(...sorted.map((row) => h('tr', null, columns.map((c) => {
      const v = row[c.key];
      const text = c.fmt ? c.fmt(v) : (v === null || v === undefined ? '–' : String(v));
      return h('td', { class: (c.num ? 'num ' : '') + (c.cls || ''), title: c.key === 'name' ? String(v) : null }, text);
    }))));
    if (!sorted.length) tbody.appendChild(h('tr', null, h('td', { colspan: columns.length }, empty('No processes reported', ''))));
  }
  return { el: table, setRows(rows) { data = rowsOf(rows); render(); } };
}

const PROC_COLUMNS = [
  { key: 'pid', label: 'PID', num: true },
  { key: 'name', label: 'Process', cls: 'name' },
  { key: 'cpu_percent', label: 'CPU', num: true, fmt: fmtPct },
  { key: 'memory_percent', label: 'Memory', num: true, fmt: fmtPct },
  { key: 'memory_bytes', label: 'RSS', num: true, fmt: fmtBytes },
];

const PSI_RESOURCES = [['cpu', 'CPU'], ['memory', 'Memory'], ['io', 'I/O']];
const TCP_STATES = [
  ['established', 'established'], ['syn_sent', 'syn-sent'], ['syn_recv', 'syn-recv'],
  ['fin_wait1', 'fin-wait-1'], ['fin_wait2', 'fin-wait-2'], ['time_wait', 'time-wait'],
  ['close', 'close'], ['close_wait', 'close-wait'], ['last_ack', 'last-ack'],
  ['listen', 'listen'], ['closing', 'closing'],
];
const CGROUP_KINDS = {
  systemd_service: 'service', docker: 'docker', containerd: 'containerd',
  cri_o: 'cri-o', kubernetes_pod: 'pod', other: 'other',
};

function fmtMs(v) {
  return v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(v < 10 ? 2 : 1) + ' ms';
}

function fmtCount(v) {
  return v === null || v === undefined || !Number.isFinite(v) ? '–' : String(Math.round(v));
}

function fmtCelsius(v) {
  return v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(1) + ' °C';
}

const th = (label, num) => h('th', { class: num ? 'num' : null, scope: 'col' }, label);
const td = (text, num, title) => h('td', { class: num ? 'num' : 'name', title: title || null }, text);
const table = (name, head, rows) => h('table', { 'data-table': name },
  h('thead', null, h('tr', null, head)), h('tbody', null, rows));

/** Pressure stall: some avg10/60/300 and full avg10 per resource; null without PSI. */
export function pressureTable(p) {
  if (!p) return null;
  const rows = PSI_RESOURCES.filter(([k]) => p[k]).map(([k, label]) => {
    const st = p[k];
    return h('tr', { 'data-resource': k }, td(label),
      h('td', null, meter(st.some.avg10)),
      td(fmtPct(st.some.avg60), true), td(fmtPct(st.some.avg300), true),
      td(st.full ? fmtPct(st.full.avg10) : '–', true));
  });
  if (!rows.length) return null;
  return table('pressure', [th('Resource'), th('Some (10 s)'), th('Some (60 s)', true), th('Some (300 s)', true), th('Full (10 s)', true)], rows);
}

/** Per block device: IOPS, latency, utilisation; null without disks. */
export function disksTable(disks) {
  if (!disks || !disks.length) return null;
  return table('disks', [th('Device'), th('Read IOPS', true), th('Write IOPS', true), th('Read latency', true), th('Write latency', true), th('Utilisation')],
    disks.map((d) => h('tr', null, td(d.name, false, d.name),
      td(fmtNum(d.read_iops, 1), true), td(fmtNum(d.write_iops, 1), true),
      td(fmtMs(d.read_latency_ms), true), td(fmtMs(d.write_latency_ms), true),
      h('td', null, meter(d.utilization_percent === undefined ? NaN : d.utilization_percent)))));
}

/** TCP sockets per state (v4, v6) and retransmissions; null without TCP. */
export function tcpTable(t) {
  if (!t) return null;
  const v4 = t.v4 || {};
  const v6 = t.v6 || {};
  const rows = TCP_STATES
    .filter(([k]) => k === 'established' || (v4[k] || 0) + (v6[k] || 0) > 0)
    .map(([k, label]) => h('tr', { 'data-state': k }, td(label),
      td(fmtCount(v4[k] || 0), true), td(fmtCount(v6[k] || 0), true), td(fmtCount((v4[k] || 0) + (v6[k] || 0)), true)));
  const retrans = t.retransmits_per_sec === undefined ? '–'
    : `${fmtNum(t.retransmits_per_sec)}/s` + (t.retransmit_percent === undefined ? '' : ` (${fmtNum(t.retransmit_percent)} % of segments sent)`);
  rows.push(h('tr', { 'data-state': 'retransmits' }, td('retransmits'), h('td', { class: 'num', colspan: 3 }, retrans)));
  return table('tcp', [th('State'), th('IPv4', true), th('IPv6', true), th('Total', true)], rows);
}

/** The top cgroups by CPU and by memory, merged by path, busiest first; null without any. */
export function containersTable(s) {
  const byPath = new Map();
  for (const g of [...(s.top_cpu_cgroups || []), ...(s.top_mem_cgroups || [])]) {
    if (!byPath.has(g.path)) byPath.set(g.path, g);
  }
  const groups = [...byPath.values()].sort((a, b) => (b.cpu_percent || 0) - (a.cpu_percent || 0));
  if (!groups.length) return null;
  return table('containers', [th('Name'), th('Kind'), th('CPU', true), th('Memory', true), th('Limit', true), th('Of limit', true)],
    groups.map((g) => h('tr', null, td(g.name || g.path, false, g.path),
      h('td', null, CGROUP_KINDS[g.kind] || 'other'),
      td(fmtPct(g.cpu_percent), true), td(fmtBytes(g.memory_bytes), true),
      td(g.memory_limit_bytes ? fmtBytes(g.memory_limit_bytes) : 'none', true),
      td(g.memory_limit_bytes ? fmtPct((g.memory_bytes * 100) / g.memory_limit_bytes) : '–', true))));
}

/** Temperature sensors, hottest first; null without any. */
export function temperaturesTable(temps) {
  if (!temps || !temps.length) return null;
  const sorted = temps.slice().sort((a, b) => b.celsius - a.celsius);
  return table('temperatures', [th('Sensor'), th('Temperature', true), th('Critical', true)],
    sorted.map((t) => h('tr', null, td(t.label, false, t.label), td(fmtCelsius(t.celsius), true),
      td(t.critical_celsius === undefined ? '–' : fmtCelsius(t.critical_celsius), true))));
}

export function mount(root, ctx) {
  let range = ctx.range;
  let id = ctx.id;
  let destroyed = false;
  let charts = {};
  let seriesState = {};
  let forecastAt = Date.now();
  let forecastFetch = null;
  let latest = null;
  let clockOffset = 0;
  let refreshTimer = null;

  const errorBox = h('div');
  const select = h('select', { id: 'machine-select', 'aria-label': 'Machine' });
  const status = h('span');
  const title = h('h1', { id: 'machine-title' });
  const host = h('span', { class: 'sub' });
  const facts = h('div', { class: 'kv', id: 'machine-facts' });
  const panels = {};
  const panel = (key, name, note, wide) => {
    const body = h('div', { class: 'chart', 'data-chart': key });
    panels[key] = body;
    return h('section', { class: 'panel' + (wide ? ' wide' : '') },
      h('div', { class: 'panel-head' }, h('h2', null, name), note ? h('span', { class: 'note' }, note) : null), body);
  };
  const fsBody = h('div');
  const cpuProcs = sortable(PROC_COLUMNS, (p) => p.top_cpu || [], { key: 'cpu_percent', desc: true });
  const memProcs = sortable(PROC_COLUMNS, (p) => p.top_mem || [], { key: 'memory_bytes', desc: true });
  const procStamp = h('span', { class: 'note' });
  const alertsBody = h('div');
  // Host-detail panels: hidden until the latest snapshot carries the detail.
  const details = {};
  const detailPanel = (key, name, note, wide) => {
    const body = h('div');
    const section = h('section', { class: 'panel' + (wide ? ' wide' : ''), 'data-panel': key, hidden: true },
      h('div', { class: 'panel-head' }, h('h2', null, name), note ? h('span', { class: 'note' }, note) : null), body);
    details[key] = { section, body };
    return section;
  };

  replace(root,
    h('div', { class: 'page-head' }, select, title, host, status),
    facts,
    errorBox,
    h('div', { class: 'grid', style: 'margin-top:14px' },
      panel('cpu', 'CPU', 'avg with min–max band · drag to zoom, double-click to reset'),
      panel('cores', 'CPU per core', 'sampled per bucket'),
      panel('memory', 'Memory', 'percent used · dashed: 5-min forecast when available'),
      panel('swap', 'Swap', 'bytes in use'),
      panel('disk', 'Disk I/O', 'bytes per second'),
      panel('net', 'Network', 'bytes per second'),
      panel('load', 'Load', '1-minute load average'),
      h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'Filesystems')), fsBody),
      detailPanel('pressure', 'Pressure stall', 'share of time tasks waited, latest sample'),
      detailPanel('disks', 'Disks', 'per device over the last interval'),
      detailPanel('tcp', 'TCP', 'sockets per state'),
      detailPanel('temperatures', 'Temperatures', 'latest sample'),
      detailPanel('containers', 'Containers and services', 'top cgroups by CPU and by memory', true),
      h('section', { class: 'panel wide' }, h('div', { class: 'panel-head' }, h('h2', null, 'Top processes'), procStamp),
        h('div', { class: 'two' },
          h('div', null, h('h2', { style: 'margin-top:6px' }, 'By CPU'), h('div', { 'data-table': 'top-cpu' }, cpuProcs.el)),
          h('div', null, h('h2', { style: 'margin-top:6px' }, 'By memory'), h('div', { 'data-table': 'top-mem' }, memProcs.el)))),
      h('section', { class: 'panel wide' }, h('div', { class: 'panel-head' }, h('h2', null, 'Alerts and anomalies')), alertsBody)));

  select.addEventListener('change', () => ctx.navigate(ctx.href('machine', select.value, range)));

  async function loadMachines() {
    // The picker holds one bounded page (natural order); a larger fleet is
    // searched from the overview's table.
    const list = await get('/api/machines', { limit: 1000 });
    if (id && !list.machines.some((m) => m.machine_id === id)) list.machines.unshift({ machine_id: id, hostname: null });
    clockOffset = list.now - Date.now() / 1000;
    select.replaceChildren(...list.machines.map((m) => {
      const o = h('option', { value: m.machine_id }, m.machine_id + (m.hostname && m.hostname !== m.machine_id ? ' — ' + m.hostname : ''));
      if (m.machine_id === id) o.selected = true;
      return o;
    }));
    return list.machines;
  }

  function renderHeader(s) {
    setText(title, s.machine_id);
    setText(host, s.hostname || '');
    host.title = s.hostname || '';
    document.title = 'sysmon · ' + s.machine_id;
    const age = Date.now() / 1000 + clockOffset - s.timestamp;
    replace(status, statusBadge(age <= 120 ? 'online' : age <= 600 ? 'stale' : 'offline'));
    const m = s.memory || {};
    const l = s.load_avg;
    replace(facts,
      h('span', null, 'CPU', h('b', { 'data-fact': 'cpu' }, fmtPct(s.cpu_usage))),
      h('span', null, 'Memory', h('b', { 'data-fact': 'memory' }, fmtPct(s.memory_usage)), m.total_bytes ? ` of ${fmtBytes(m.total_bytes)}` : ''),
      h('span', null, 'Swap', h('b', null, m.swap_total_bytes ? `${fmtBytes(m.swap_used_bytes)} / ${fmtBytes(m.swap_total_bytes)}` : '–')),
      h('span', null, 'Disk', h('b', null, s.disk_rate ? `${fmtRate(s.disk_rate.read)} r · ${fmtRate(s.disk_rate.write)} w` : '–')),
      h('span', null, 'Net', h('b', null, s.network_rate ? `${fmtRate(s.network_rate.sent)} tx · ${fmtRate(s.network_rate.recv)} rx` : '–')),
      h('span', null, 'Load', h('b', null, l ? `${fmtNum(l.one)} ${fmtNum(l.five)} ${fmtNum(l.fifteen)}` : '–')),
      h('span', null, 'Cores', h('b', null, String((s.cpu_per_core || []).length || '–'))),
      h('span', null, 'Uptime', h('b', null, s.uptime_secs ? fmtDuration(s.uptime_secs) : '–')),
      h('span', null, 'Last sample', h('b', { 'data-fact': 'last-seen', title: fmtTime(s.timestamp) }, fmtAgo(age))));
  }

  function renderFilesystems(s) {
    const fs = s.filesystems || [];
    if (!fs.length) { replace(fsBody, empty('No filesystems reported', 'This agent does not send filesystem usage.')); return; }
    replace(fsBody, h('table', null,
      h('thead', null, h('tr', null, h('th', null, 'Mount'), h('th', null, 'Type'), h('th', null, 'Used'), h('th', { class: 'num' }, 'Free'), h('th', { class: 'num' }, 'Size'))),
      h('tbody', null, fs.map((f) => h('tr', null,
        h('td', { class: 'name', title: f.mount_point }, f.mount_point),
        h('td', null, f.fs_type || '–'),
        h('td', null, meter(f.total_bytes ? (f.used_bytes * 100) / f.total_bytes : NaN)),
        h('td', { class: 'num' }, fmtBytes(f.available_bytes)),
        h('td', { class: 'num' }, fmtBytes(f.total_bytes)))))));
  }

  function renderDetails(s) {
    for (const [key, el] of [
      ['pressure', pressureTable(s.pressure)],
      ['disks', disksTable(s.disks)],
      ['tcp', tcpTable(s.tcp)],
      ['temperatures', temperaturesTable(s.temperatures)],
      ['containers', containersTable(s)],
    ]) {
      const d = details[key];
      d.section.hidden = !el;
      if (el) replace(d.body, el);
      else d.body.replaceChildren();
    }
  }

  function renderProcesses(p) {
    cpuProcs.setRows(p);
    memProcs.setRows(p);
    setText(procStamp, 'as of ' + fmtTime(p.timestamp));
  }

  function chart(key, cfg) {
    const el = panels[key];
    if (charts[key]) { charts[key].destroy(); delete charts[key]; }
    el.replaceChildren();
    const c = timeChart(el, { height: 180, ...cfg });
    charts[key] = c;
    return c;
  }

  function noData(key, text) {
    if (charts[key]) { charts[key].destroy(); delete charts[key]; }
    replace(panels[key], empty('No data in this range', text || 'Pick a longer range, or wait for samples.'));
  }

  async function loadSeries(metric) {
    return get(machinePath(id) + '/series', { metric, range });
  }

  function withForecast(s, fc, metric) {
    // [ts, avg, min, max, forecast, lower, upper]: the forecast starts at the
    // last observed point so the dashed line continues the chart.
    const f = (fc && fc.forecasts || []).find((x) => x.metric === metric);
    const cols = alignSeries([s], [true]);
    const n = cols[0].length;
    const fcol = new Array(n).fill(null);
    const lo = new Array(n).fill(null);
    const hi = new Array(n).fill(null);
    if (f && f.ts.length && n) {
      fcol[n - 1] = cols[1][n - 1];
      lo[n - 1] = cols[1][n - 1];
      hi[n - 1] = cols[1][n - 1];
      const lastObserved = cols[0][n - 1];
      f.ts.forEach((t, i) => {
        // Live samples overtake an older forecast: only its future part is drawn.
        if (t <= lastObserved) return;
        cols[0].push(t); cols[1].push(null); cols[2].push(null); cols[3].push(null);
        fcol.push(f.value[i]); lo.push(f.lower[i]); hi.push(f.upper[i]);
      });
    }
    return [...cols, fcol, lo, hi];
  }

  async function loadCharts() {
    const metrics = ['cpu', 'memory', 'swap', 'disk_read', 'disk_write', 'net_sent', 'net_recv', 'load1'];
    const [results, cores, fc] = await Promise.all([
      Promise.all(metrics.map(loadSeries)),
      get(machinePath(id) + '/cores', { range, points: 200 }),
      get(machinePath(id) + '/forecast').catch(() => null),
    ]);
    if (destroyed) return;
    const by = Object.fromEntries(metrics.map((m, i) => [m, results[i]]));
    seriesState = { by, fc };
    forecastAt = Date.now();
    const hasForecast = (metric) => !!(fc && (fc.forecasts || []).some((x) => x.metric === metric && x.ts.length));
    const pctLines = (label, color, metric) => [
      { label, color, band: true, fill: false },
      ...(hasForecast(metric) ? [{ label: 'forecast (5 min)', color, dash: [6, 5], band: true, bandAlpha: 0.08 }] : []),
    ];
    for (const [key, metric, color] of [['cpu', 'cpu', PALETTE[0]], ['memory', 'memory', PALETTE[3]]]) {
      if (!by[metric].ts.length) { noData(key); continue; }
      const data = withForecast(by[metric], fc, metric);
      chart(key, { unit: 'percent', yMin: 0, yMax: 100, lines: pctLines(metric === 'cpu' ? 'CPU' : 'memory', color, metric) })
        .setData(hasForecast(metric) ? data : data.slice(0, 4));
    }
    const noSwap = latest && latest.memory && latest.memory.swap_total_bytes === 0;
    if (noSwap) noData('swap', 'No swap is configured on this machine.');
    else if (by.swap.ts.length) chart('swap', { unit: 'bytes', lines: [{ label: 'swap used', color: PALETTE[4], band: true }] }).setData(alignSeries([by.swap], [true]));
    else noData('swap', 'This agent reports no swap.');
    if (by.disk_read.ts.length || by.disk_write.ts.length) {
      chart('disk', { unit: 'bytes/s', lines: [{ label: 'read', color: PALETTE[2] }, { label: 'write', color: PALETTE[1] }] }).setData(alignSeries([by.disk_read, by.disk_write]));
    } else noData('disk');
    if (by.net_sent.ts.length || by.net_recv.ts.length) {
      chart('net', { unit: 'bytes/s', lines: [{ label: 'sent', color: PALETTE[0] }, { label: 'received', color: PALETTE[5] }] }).setData(alignSeries([by.net_sent, by.net_recv]));
    } else noData('net');
    if (by.load1.ts.length) chart('load', { unit: 'load', lines: [{ label: 'load 1', color: PALETTE[6], band: true }] }).setData(alignSeries([by.load1], [true]));
    else noData('load', 'This agent reports no load average.');
    if (cores.ts.length && cores.cores.length) {
      chart('cores', { unit: 'percent', yMin: 0, yMax: 100, lines: cores.cores.map((_, i) => ({ label: 'core ' + i, color: PALETTE[i % PALETTE.length], width: 1.1 })) })
        .setData([cores.ts, ...cores.cores]);
    } else noData('cores', 'No per-core samples in this range (per-core values are kept as long as raw samples).');
  }

  async function loadAlerts() {
    const [al, an, ep] = await Promise.all([get('/api/alerts'), get('/api/anomalies', { range, machine: id }), get('/api/episodes', { range, machine: id })]);
    if (destroyed) return;
    const mine = (al.alerts || []).filter((a) => a.machine_id === id);
    const parts = [];
    if (!al.available && !an.available) {
      parts.push(empty('No alerts or anomalies', 'Alerting and anomaly detection are not running on this server yet; this panel fills in once they are.'));
    } else {
      parts.push(mine.length
        ? h('table', null, h('thead', null, h('tr', null, h('th', null, 'State'), h('th', null, 'Rule'), h('th', null, 'Severity'), h('th', null, 'Since'), h('th', null, 'Message'))),
          h('tbody', null, mine.map((a) => h('tr', null, h('td', null, a.state), h('td', null, a.rule), h('td', null, a.severity), h('td', null, fmtTime(a.since)), h('td', { class: 'name' }, a.message)))))
        : empty('No alerts', 'Nothing is firing for this machine.'));
      // A flag that persists is one episode: start, duration, peak, what took part.
      const episodes = ep.episodes || [];
      if (episodes.length) {
        parts.push(h('table', { class: 'episodes', 'data-table': 'episodes' }, h('thead', null, h('tr', null, h('th', null, 'Episode start'), h('th', null, 'Duration'), h('th', { class: 'num' }, 'Peak'), h('th', { class: 'num' }, 'Samples'), h('th', null, 'Metrics'), h('th', null, 'Why (at the peak)'))),
          h('tbody', null, episodes.slice(0, 50).map((e) => h('tr', { class: e.open ? 'open' : '' },
            h('td', null, fmtTime(e.start)),
            h('td', null, e.open ? 'ongoing' : fmtDuration(Math.max(0, e.end - e.start))),
            h('td', { class: 'num' }, fmtNum(e.peak_score, 3)),
            h('td', { class: 'num' }, String(e.samples)),
            h('td', null, (e.metrics || []).join(', ')),
            h('td', { class: 'name' }, (e.reasons || []).join('; ')))))));
      }
      const list = an.anomalies || [];
      parts.push(list.length
        ? h('table', null, h('thead', null, h('tr', null, h('th', null, 'Time'), h('th', { class: 'num' }, 'Score'), h('th', null, 'What'))),
          h('tbody', null, list.slice(0, 50).map((a) => h('tr', null, h('td', null, fmtTime(a.timestamp)), h('td', { class: 'num' }, fmtNum(a.score, 3)), h('td', { class: 'name' }, a.message)))))
        : empty('No anomalies', `None detected in the last ${range}.`));
    }
    replace(alertsBody, ...parts);
  }

  async function load() {
    clearTimeout(refreshTimer);
    errorBox.replaceChildren();
    try {
      const machines = await loadMachines();
      if (destroyed) return;
      if (id === null || id === undefined) {
        if (!machines.length) { replace(errorBox, empty('No machines yet', 'Machines appear as soon as their first sample is stored.')); return; }
        ctx.navigate(ctx.href('machine', machines[0].machine_id, range));
        return;
      }
      const [s, p] = await Promise.all([get(machinePath(id) + '/latest'), get(machinePath(id) + '/processes')]);
      if (destroyed) return;
      latest = s;
      renderHeader(s);
      renderFilesystems(s);
      renderDetails(s);
      renderProcesses(p);
      await Promise.all([loadCharts(), loadAlerts()]);
      if (!destroyed) document.body.dataset.ready = 'machine';
    } catch (e) {
      if (destroyed) return;
      const msg = e.status === 404 ? `There is no machine with this id. Pick one from the list.` : 'Could not load this machine: ' + e.message;
      replace(errorBox, h('div', { class: 'error-box', role: 'alert' }, msg));
    }
    // Long ranges are re-read every minute; short ones grow with the live feed.
    if (!LIVE_APPEND_MAX_RANGE[range]) refreshTimer = setTimeout(() => { if (!destroyed) loadCharts().catch(() => {}); }, 60000);
  }

  function appendLive(s) {
    const span = LIVE_APPEND_MAX_RANGE[range];
    if (!span || !seriesState.by) return;
    const vals = {
      cpu: s.cpu_usage, memory: s.memory_usage,
      swap: s.memory ? s.memory.swap_used_bytes : null,
      disk_read: s.disk_rate ? s.disk_rate.read : null, disk_write: s.disk_rate ? s.disk_rate.write : null,
      net_sent: s.network_rate ? s.network_rate.sent : null, net_recv: s.network_rate ? s.network_rate.recv : null,
      load1: s.load_avg ? s.load_avg.one : null,
    };
    const cutoff = s.timestamp - span;
    for (const [m, v] of Object.entries(vals)) {
      const ser = seriesState.by[m];
      if (!ser || v === null || v === undefined) continue;
      const last = ser.ts.length ? ser.ts[ser.ts.length - 1] : -Infinity;
      if (s.timestamp <= last) continue;
      ser.ts.push(s.timestamp); ser.avg.push(v); ser.min.push(v); ser.max.push(v); ser.count.push(1);
      while (ser.ts.length && ser.ts[0] < cutoff) { ser.ts.shift(); ser.avg.shift(); ser.min.shift(); ser.max.shift(); ser.count.shift(); }
    }
    // The forecast follows the live data: refetched every 30 s.
    if (!forecastFetch && Date.now() - forecastAt > 30000) {
      forecastFetch = get(machinePath(id) + '/forecast')
        .then((fc) => { if (seriesState.by) seriesState.fc = fc; })
        .catch(() => {})
        .finally(() => { forecastFetch = null; forecastAt = Date.now(); });
    }
    const by = seriesState.by;
    for (const m of ['cpu', 'memory']) {
      if (!charts[m]) continue;
      const d = withForecast(by[m], seriesState.fc, m);
      charts[m].setData(charts[m].u.series.length > 4 ? d : d.slice(0, 4));
    }
    if (charts.swap) charts.swap.setData(alignSeries([by.swap], [true]));
    if (charts.disk) charts.disk.setData(alignSeries([by.disk_read, by.disk_write]));
    if (charts.net) charts.net.setData(alignSeries([by.net_sent, by.net_recv]));
    if (charts.load) charts.load.setData(alignSeries([by.load1], [true]));
  }

  const offSnap = ctx.live.on('snapshot', (ev) => {
    const s = ev.snapshot;
    if (!s || s.machine_id !== id || (latest && s.timestamp <= latest.timestamp)) return;
    latest = s;
    renderHeader(s);
    renderFilesystems(s);
    renderDetails(s);
    if (ev.processes) renderProcesses(ev.processes);
    appendLive(s);
  });
  const ageTimer = setInterval(() => {
    if (!latest) return;
    const el = facts.querySelector('[data-fact="last-seen"]');
    if (el) setText(el, fmtAgo(Date.now() / 1000 + clockOffset - latest.timestamp));
  }, 1000);

  load();
  return {
    setRange(r) { range = r; load(); },
    unmount() {
      destroyed = true;
      offSnap();
      clearInterval(ageTimer);
      clearTimeout(refreshTimer);
      for (const c of Object.values(charts)) c.destroy();
    },
  };
}
