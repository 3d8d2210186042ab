// Alerts and anomalies across machines, with the CPU-vs-memory scatter
// (anomalous samples marked in red). Active alerts are grouped by rule: one
// collapsible group per rule with its count, its machines listed (at most
// ROWS_PER_GROUP rows, the rest counted), so that a storm of one rule on
// 10,000 machines is one line to read, not 10,000.
import { h, replace, fmtTime, fmtNum, empty } from '../dom.js';
import { get } from '../api.js';
import { scatterChart } from '../charts.js';

/** Rows rendered per group; the rest of a large group is counted, not drawn. */
const ROWS_PER_GROUP = 200;
/** Groups up to this size start open; larger ones start collapsed. */
const OPEN_UP_TO = 10;
const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };

/** The active alerts grouped by rule: firing groups first, then by severity and size. */
export function groupByRule(alerts) {
  const groups = new Map();
  for (const a of alerts) {
    let g = groups.get(a.rule);
    if (!g) {
      g = { rule: a.rule, severity: a.severity, alerts: [], firing: 0, pending: 0 };
      groups.set(a.rule, g);
    }
    g.alerts.push(a);
    if (a.state === 'firing') g.firing++;
    else if (a.state === 'pending') g.pending++;
    if ((SEVERITY_RANK[a.severity] ?? 3) < (SEVERITY_RANK[g.severity] ?? 3)) g.severity = a.severity;
  }
  const list = [...groups.values()];
  for (const g of list) {
    // Firing before pending, then by machine in natural order (web-2 before web-10).
    g.alerts.sort((x, y) => (x.state === y.state ? 0 : x.state === 'firing' ? -1 : 1)
      || String(x.machine_id ?? '').localeCompare(String(y.machine_id ?? ''), undefined, { numeric: true }));
  }
  list.sort((x, y) => (y.firing > 0) - (x.firing > 0)
    || (SEVERITY_RANK[x.severity] ?? 3) - (SEVERITY_RANK[y.severity] ?? 3)
    || y.alerts.length - x.alerts.length
    || x.rule.localeCompare(y.rule));
  return list;
}

export function mount(root, ctx) {
  let range = ctx.range;
  let destroyed = false;
  let scatter = null;
  const errorBox = h('div');
  const alertsBody = h('div');
  const anomBody = h('div');
  const scatterEl = h('div', { class: 'chart', 'data-chart': 'scatter' });
  const scatterNote = h('span', { class: 'note' });
  replace(root,
    h('div', { class: 'page-head' }, h('h1', null, 'Alerts & anomalies')),
    errorBox,
    h('div', { class: 'grid' },
      h('section', { class: 'panel wide' }, h('div', { class: 'panel-head' }, h('h2', null, 'Active alerts')), alertsBody),
      h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'CPU vs memory'), scatterNote), scatterEl),
      h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', null, 'Anomalies')), anomBody)));
  document.title = 'sysmon · alerts & anomalies';

  const link = (id) => (id === null || id === undefined ? h('span', null, 'fleet') : h('a', { href: ctx.href('machine', id, range), title: id }, id));

  async function load() {
    errorBox.replaceChildren();
    try {
      const [al, an, sc] = await Promise.all([
        get('/api/alerts'),
        get('/api/anomalies', { range }),
        get('/api/scatter', { range }),
      ]);
      if (destroyed) return;
      const alerts = al.alerts || [];
      // Which groups the user opened or closed survive the 30 s reload.
      const openNow = new Map([...alertsBody.querySelectorAll('details[data-alert-group]')]
        .map((d) => [d.dataset.alertGroup, d.open]));
      replace(alertsBody, alerts.length
        ? groupByRule(alerts).map((g) => {
          const counts = [g.firing ? `${g.firing} firing` : null, g.pending ? `${g.pending} pending` : null].filter(Boolean).join(', ');
          const n = g.alerts.length;
          const shown = g.alerts.slice(0, ROWS_PER_GROUP);
          const open = openNow.has(g.rule) ? openNow.get(g.rule) : n <= OPEN_UP_TO;
          return h('details', { class: 'alert-group', 'data-alert-group': g.rule, 'data-count': n, open },
            h('summary', null,
              h('strong', null, g.rule), ' ',
              h('span', { class: `sev sev-${g.severity}` }, g.severity), ' ',
              h('span', { class: 'count', 'data-count': n }, `${n} ${n === 1 ? 'alert' : 'alerts'}`),
              counts ? h('span', { class: 'note' }, ` · ${counts}`) : null),
            h('table', { 'data-table': 'alerts' },
              h('thead', null, h('tr', null, h('th', null, 'State'), h('th', null, 'Machine'), h('th', null, 'Subject'), h('th', null, 'Since'), h('th', { class: 'num' }, 'Value'), h('th', null, 'Message'))),
              h('tbody', null, shown.map((a) => h('tr', { 'data-rule': a.rule }, h('td', null, a.state), h('td', null, link(a.machine_id)), h('td', null, a.subject ?? ''),
                h('td', null, fmtTime(a.since)), h('td', { class: 'num' }, fmtNum(a.value, 1)), h('td', { class: 'name', title: a.message }, a.message))))),
            n > shown.length ? h('p', { class: 'note', 'data-more': n - shown.length }, `… and ${n - shown.length} more ${g.rule} alerts not listed`) : null);
        })
        : al.available
          ? empty('All clear', 'No alert is pending or firing.')
          : empty('No alerts', 'Alerting is not running on this server yet: rules (CPU > 80 % for 30 s, memory > 80 %, machine offline) appear here once it is.'));
      const list = an.anomalies || [];
      replace(anomBody, list.length
        ? h('table', { 'data-table': 'anomalies' },
          h('thead', null, h('tr', null, h('th', null, 'Time'), h('th', null, 'Machine'), h('th', { class: 'num' }, 'Score'), h('th', null, 'What'))),
          h('tbody', null, list.slice(0, 200).map((a) => h('tr', null, h('td', null, fmtTime(a.timestamp)), h('td', null, link(a.machine_id)), h('td', { class: 'num' }, fmtNum(a.score, 3)), h('td', { class: 'name', title: a.message }, a.message)))))
        : an.available
          ? empty('No anomalies', `None detected in the last ${range}.`)
          : empty('No anomalies', 'Anomaly detection is not running on this server yet; the scatter shows every machine\u2019s samples meanwhile.'));
      if (scatter) { scatter.destroy(); scatter = null; }
      scatterEl.replaceChildren();
      const pts = sc.points || [];
      scatterNote.textContent = `${pts.length} samples over ${range} · red: anomalies · drag to zoom`;
      if (pts.length) scatter = scatterChart(scatterEl, pts);
      else scatterEl.appendChild(empty('No samples in this range', ''));
      document.body.dataset.ready = 'alerts';
    } catch (e) {
      if (destroyed) return;
      replace(errorBox, h('div', { class: 'error-box', role: 'alert' }, 'Could not load alerts: ', e.message));
    }
  }

  load();
  const timer = setInterval(() => { if (!destroyed) load(); }, 30000);
  return {
    setRange(r) { range = r; load(); },
    unmount() { destroyed = true; clearInterval(timer); if (scatter) scatter.destroy(); },
  };
}
