// sysmon dashboard: a single page with hash routes
//   #/                      overview of every machine and the fleet
//   #/machine/<id>          one machine (its own URL)
//   #/alerts                alerts, anomalies and the CPU-vs-memory scatter
//   #/compare?ids=a,b&metric=cpu   2 to 5 machines' series on one chart
// and `?range=5m|15m|1h|6h|24h|7d` after the route. Live updates arrive over
// Server-Sent Events (/api/events).
import { replace, h, setText } from './dom.js';
import * as overview from './views/overview.js';

export const RANGES = ['5m', '15m', '1h', '6h', '24h', '7d'];
// The overview (the landing page) is in the first module graph (preloaded by
// index.html); the other views load when first shown.
const VIEWS = {
  overview: () => Promise.resolve(overview),
  machine: () => import('./views/machine.js'),
  alerts: () => import('./views/alerts.js'),
  compare: () => import('./views/compare.js'),
};

/** The live feed: one EventSource, re-opened when the followed machine changes. */
class Live {
  constructor(indicator, label) {
    this.indicator = indicator;
    this.label = label;
    this.es = null;
    this.follow = null;
    this.handlers = { batch: new Set(), snapshot: new Set(), lagged: new Set() };
    this.events = 0;
    this.lastEvent = 0;
    this.retryTimer = null;
    setInterval(() => this.tick(), 1000);
  }

  on(kind, fn) { this.handlers[kind].add(fn); return () => this.handlers[kind].delete(fn); }

  state(s, text) {
    this.indicator.dataset.state = s;
    setText(this.label, text);
  }

  tick() {
    if (this.indicator.dataset.state !== 'live' || !this.lastEvent) return;
    const ago = (Date.now() - this.lastEvent) / 1000;
    this.indicator.title = `Live updates over Server-Sent Events · last update ${ago.toFixed(0)} s ago · ${this.events} received`;
  }

  /** Follows one machine (`follow`) and/or only the machines `only` (the page shown). */
  connect(follow, only) {
    const key = only ? only.join(',') : null;
    if (this.es && this.follow === follow && this.only === key) return;
    this.follow = follow;
    this.only = key;
    if (this.es) this.es.close();
    clearTimeout(this.retryTimer);
    const q = new URLSearchParams();
    if (follow) q.set('machine', follow);
    if (key !== null) q.set('machines', key);
    const url = '/api/events' + (q.toString() ? '?' + q.toString() : '');
    const es = new EventSource(url);
    this.es = es;
    this.state('connecting', 'Connecting…');
    es.addEventListener('open', () => this.state('live', 'Live'));
    es.addEventListener('hello', () => this.state('live', 'Live'));
    es.addEventListener('error', () => {
      if (this.es !== es) return;
      this.state('reconnecting', 'Reconnecting…');
      if (es.readyState === EventSource.CLOSED) {
        this.es = null;
        this.retryTimer = setTimeout(() => { const o = this.only; this.only = undefined; this.connect(this.follow, o === null ? null : o.split(',')); }, 3000);
      }
    });
    for (const kind of Object.keys(this.handlers)) {
      es.addEventListener(kind, (ev) => {
        let data;
        try { data = JSON.parse(ev.data); } catch { return; }
        this.events++;
        this.lastEvent = Date.now();
        window.__sysmonLive = { events: this.events, last: this.lastEvent };
        if (this.indicator.dataset.state !== 'live') this.state('live', 'Live');
        for (const fn of this.handlers[kind]) {
          try { fn(data); } catch (e) { console.error('live handler failed', e); }
        }
      });
    }
  }
}

function parseHash() {
  const raw = window.location.hash.replace(/^#/, '') || '/';
  const [path, query] = raw.split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean);
  let view = 'overview';
  let id = null;
  if (parts[0] === 'machine') {
    view = 'machine';
    if (parts.length > 1) {
      try { id = decodeURIComponent(parts.slice(1).join('/')); } catch { id = null; }
    }
  } else if (parts[0] === 'alerts') {
    view = 'alerts';
  } else if (parts[0] === 'compare') {
    view = 'compare';
  }
  let range = params.get('range');
  if (!RANGES.includes(range)) range = localStorage.getItem('sysmon.range');
  if (!RANGES.includes(range)) range = view === 'overview' ? '15m' : '1h';
  return { view, id, range, params, query: view === 'compare' ? query || '' : '' };
}

/** The hash for a route (`extra`: more query parameters, for compare). */
export function href(view, id, range, extra) {
  const q = new URLSearchParams(extra || {});
  if (range) q.set('range', range);
  const r = q.toString() ? '?' + q.toString() : '';
  if (view === 'machine') return '#/machine' + (id !== null && id !== undefined ? '/' + encodeURIComponent(id) : '') + r;
  if (view === 'alerts') return '#/alerts' + r;
  if (view === 'compare') return '#/compare' + r;
  return '#/' + r;
}

const viewEl = document.getElementById('view');
const rangesEl = document.getElementById('ranges');
const live = new Live(document.getElementById('live'), document.getElementById('live-label'));
let current = null; // { route, instance }
let routing = 0; // the latest route() call (a view module may still be loading)

function renderRanges(route) {
  replace(rangesEl, RANGES.map((r) => h('button', {
    type: 'button',
    'data-range': r,
    'aria-pressed': r === route.range ? 'true' : 'false',
    onclick: () => {
      localStorage.setItem('sysmon.range', r);
      const keep = route.view === 'compare' ? Object.fromEntries(route.params) : null;
      window.location.hash = href(route.view, route.id, r, keep);
    },
  }, r)));
  for (const a of document.querySelectorAll('[data-nav]')) {
    a.classList.toggle('active', a.dataset.nav === route.view);
    const keep = a.dataset.nav === 'compare' && route.view === 'compare' ? Object.fromEntries(route.params) : null;
    const target = a.dataset.nav === 'machine' ? href('machine', route.view === 'machine' ? route.id : null, route.range) : href(a.dataset.nav, null, route.range, keep);
    a.setAttribute('href', target);
  }
}

async function route() {
  const my = ++routing;
  const r = parseHash();
  renderRanges(r);
  if (current && current.route.view === r.view && current.route.id === r.id && current.route.query.replace(/(^|&)range=[^&]*/, '') === r.query.replace(/(^|&)range=[^&]*/, '') && current.instance.setRange) {
    // Same page, new range: reload its charts in place.
    current.route = r;
    current.instance.setRange(r.range);
    return;
  }
  let view;
  try {
    view = await VIEWS[r.view]();
  } catch (e) {
    if (my === routing) replace(viewEl, h('div', { class: 'error-box', role: 'alert' }, 'Could not load this page: ', e.message));
    return;
  }
  if (my !== routing) return; // another route came while this one loaded
  if (current) current.instance.unmount();
  const ctx = { range: r.range, id: r.id, params: r.params, live, href, navigate: (hash) => { window.location.hash = hash; } };
  viewEl.replaceChildren();
  current = { route: r, instance: view.mount(viewEl, ctx) };
  // The overview connects itself, for the machines of the page it shows.
  if (r.view !== 'overview') live.connect(r.view === 'machine' ? r.id : null);
}

window.addEventListener('hashchange', route);
route();
