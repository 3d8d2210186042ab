// Alerts and anomalies across machines, with the CPU-vs-memory scatter
// (anomalous samples marked in red).
import { h, replace, fmtTime, fmtNum, empty } from '../dom.js';
import { get } from '../api.js';
import { scatterChart } from '../charts.js';

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
      replace(alertsBody, alerts.length
        ? h('table', { 'data-table': 'alerts' },
          h('thead', null, h('tr', null, h('th', null, 'State'), h('th', null, 'Machine'), h('th', null, 'Rule'), h('th', null, 'Severity'), h('th', null, 'Since'), h('th', { class: 'num' }, 'Value'), h('th', null, 'Message'))),
          h('tbody', null, alerts.map((a) => h('tr', null, h('td', null, a.state), h('td', null, link(a.machine_id)), h('td', null, a.rule), h('td', null, a.severity),
            h('td', null, fmtTime(a.since)), h('td', { class: 'num' }, fmtNum(a.value, 1)), h('td', { class: 'name', title: a.message }, a.message)))))
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
