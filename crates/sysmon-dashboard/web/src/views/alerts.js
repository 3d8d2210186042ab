// Alerts and anomalies across machines, with the CPU-vs-memory scatter
// (anomalous samples marked in red). Active alerts come grouped by rule from
// the server (/api/alerts?group=rule): per rule its count and its first
// ROWS_PER_GROUP alerts, the rest counted, so that a storm of one rule on
// 10,000 machines is one line to read and a few kilobytes to download, not
// 10,000 alerts.
import { h, replace, fmtTime, fmtNum, empty } from '../dom.js';
import { get } from '../api.js';
import { scatterChart } from '../charts.js';

/** Alerts listed per group; the rest of a large group is counted, not sent. */
const ROWS_PER_GROUP = 200;
/** Groups up to this size start open; larger ones start collapsed. */
const OPEN_UP_TO = 10;

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
        get('/api/alerts', { group: 'rule', per_group: ROWS_PER_GROUP }),
        get('/api/anomalies', { range }),
        get('/api/scatter', { range }),
      ]);
      if (destroyed) return;
      const groups = al.groups || [];
      // Which groups the user opened or closed survive the 30 s reload.
      const openNow = new Map([...alertsBody.querySelectorAll('details[data-alert-group]')]
        .map((d) => [d.dataset.alertGroup, d.open]));
      replace(alertsBody, groups.length
        ? groups.map((g) => {
          const counts = [g.firing ? `${g.firing} firing` : null, g.pending ? `${g.pending} pending` : null].filter(Boolean).join(', ');
          const n = g.count;
          const shown = g.alerts;
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
            g.more ? h('p', { class: 'note', 'data-more': g.more }, `… and ${fmtNum(g.more, 0)} more ${g.rule} alerts not listed`) : null);
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
