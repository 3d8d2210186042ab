// Runs before the modules (a classic async script): on the overview route it
// starts the request for the first table page at once, so that it travels
// while app.js and its imports load. views/overview.js adopts it when it asks
// for exactly the same parameters (else it asks again: a divergence between
// the two costs time, never correctness). Keep in step with overview.js
// (table defaults, SPARK_POINTS, PAGE_SIZES) and app.js (parseHash).
(function () {
  try {
    const raw = window.location.hash.replace(/^#/, '') || '/';
    const [path, query] = raw.split('?');
    if (path.split('/').filter(Boolean).length) return; // not the overview
    const RANGES = ['5m', '15m', '1h', '6h', '24h', '7d'];
    let range = new URLSearchParams(query || '').get('range');
    if (!RANGES.includes(range)) range = localStorage.getItem('sysmon.range');
    if (!RANGES.includes(range)) range = '15m';
    let limit = Number(localStorage.getItem('sysmon.limit')) || 100;
    if (![25, 50, 100, 250].includes(limit)) limit = 100;
    const params = {
      range, spark: 'cpu', points: 60,
      sort: localStorage.getItem('sysmon.sort') || 'machine_id',
      order: localStorage.getItem('sysmon.order') || 'asc',
      limit, offset: 0,
    };
    const qs = new URLSearchParams(params).toString();
    const response = fetch('/api/overview?' + qs, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
    response.catch(() => {}); // adopted or not, never an unhandled rejection
    window.__sysmonOverview = { qs, response };
  } catch (e) {
    // No storage, no fetch: the overview asks for itself.
  }
}());
