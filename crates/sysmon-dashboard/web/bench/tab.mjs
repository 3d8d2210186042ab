// The overview in headless Chromium against a filled fleet database (e.g. the one
// examples/bench_fleet fills): time from navigation start to the first machine rows
// painted (measured in the page: the frame after the first row entered the DOM; `wall`
// is the harness's own clock around goto, which adds Playwright's round trips), what the
// page waited for on the way (when the table's request started and ended, how many
// requests went before it, when the last module arrived), then the JS heap and the
// largest Chromium process RSS.
//   cd crates/sysmon-dashboard/web && DB=/tmp/fleet-rel.db node bench/tab.mjs
// Env: SYSMON (the binary, default ../../../target/release/sysmon), BEFORE (a second
// binary, e.g. built from main: both are measured in the same run, loads alternating),
// RUNS (loads per binary, default 5), COLD (1, default: every load in a fresh browser
// context, i.e. an empty cache, as a first visit; 0: one context, as the earlier
// figures), PAUSE_MS (between loads, default 2500: longer than the server keeps a slow
// fleet answer, so every load also finds the server's 2 s answer cache cold).
import { chromium } from 'playwright-core';
import { spawn, execSync } from 'node:child_process';

const db = process.env.DB || '/tmp/fleet-rel.db';
const runs = Number(process.env.RUNS || 5);
const cold = (process.env.COLD || '1') !== '0';
const pause = Number(process.env.PAUSE_MS || 2500);
const binaries = [['after', process.env.SYSMON || '../../../target/release/sysmon']];
if (process.env.BEFORE) binaries.unshift(['before', process.env.BEFORE]);

async function start(bin) {
  const port = 38000 + Math.floor(Math.random() * 1000);
  const base = `http://127.0.0.1:${port}`;
  const proc = spawn(bin, ['dashboard', '--db', db, '--listen', `127.0.0.1:${port}`, '--log-level', 'warn'], { stdio: 'ignore' });
  for (let i = 0; i < 300; i++) { try { const r = await fetch(base + '/healthz'); if (r.ok) break; } catch {} await new Promise((r) => setTimeout(r, 100)); }
  await fetch(base + '/api/machines'); // warm the fleet index, as a running dashboard has it
  return { base, proc };
}

const servers = {};
for (const [name, bin] of binaries) servers[name] = await start(bin);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox', '--enable-precise-memory-info'] });
const shared = cold ? null : await browser.newContext();
const results = Object.fromEntries(binaries.map(([n]) => [n, []]));
let lastPage = null;
for (let run = 0; run < runs; run++) {
  for (const [name] of binaries) {
    await new Promise((r) => setTimeout(r, pause));
    const context = shared || await browser.newContext();
    const page = await context.newPage();
    // In the page, from navigation start (performance.now()'s origin): when the
    // first machine row entered the DOM, and the next animation frame after it
    // (the rows painted).
    await page.addInitScript(() => {
      const seen = () => {
        if (window.__rowsAt || !document.querySelector('tr[data-machine]')) return;
        window.__rowsAt = performance.now();
        requestAnimationFrame(() => { window.__rowsPaintedAt = performance.now(); });
      };
      new MutationObserver(seen).observe(document, { childList: true, subtree: true });
    });
    const t1 = Date.now();
    await page.goto(servers[name].base + '/#/?range=15m', { waitUntil: 'commit' });
    await page.waitForFunction(() => window.__rowsPaintedAt, null, { timeout: 60000 });
    const wall = Date.now() - t1;
    const ms = Math.round(await page.evaluate(() => window.__rowsPaintedAt));
    const trace = await page.evaluate(() => {
      const rs = performance.getEntriesByType('resource');
      const ov = rs.find((r) => r.name.includes('/api/overview'));
      const scripts = rs.filter((r) => r.name.endsWith('.js'));
      const nav = performance.getEntriesByType('navigation')[0];
      return {
        rows_in_dom: window.__rowsAt,
        load_event: nav ? nav.loadEventEnd : null,
        first_render: window.__sysmonFirstRender,
        overview_start: ov ? ov.startTime : null,
        overview_end: ov ? ov.responseEnd : null,
        before_overview: ov ? rs.filter((r) => r.startTime < ov.startTime).length : null,
        modules_done: scripts.length ? Math.max(...scripts.map((r) => r.responseEnd)) : null,
        scripts: scripts.length,
        requests_by_first_render: rs.filter((r) => r.startTime <= (window.__sysmonFirstRender || 0)).length,
        prefetch: window.__sysmonPrefetchUsed || 0,
      };
    });
    const round = (v) => (v == null ? v : Math.round(v));
    results[name].push({ ms, wall, ...Object.fromEntries(Object.entries(trace).map(([k, v]) => [k, round(v)])) });
    if (lastPage) {
      const c = lastPage.context();
      await lastPage.close();
      if (!shared) await c.close();
    }
    lastPage = page;
  }
}
await lastPage.waitForTimeout(3000);
const heap = await lastPage.evaluate(() => performance.memory ? performance.memory.usedJSHeapSize : -1);
const rows = await lastPage.$$eval('tr[data-machine]', (t) => t.length);
const cdp = await lastPage.context().newCDPSession(lastPage);
await cdp.send('Performance.enable');
const m2 = (await cdp.send('Performance.getMetrics')).metrics;
const get = (n) => (m2.find((x) => x.name === n) || {}).value;
let rss = 'n/a';
try { rss = execSync("ps -o rss= -C chromium | sort -n | tail -1").toString().trim(); } catch {}
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };
const summary = {};
for (const [name] of binaries) {
  const r = results[name];
  summary[name] = {
    first_rows_ms: r.map((x) => x.ms),
    median_ms: median(r.map((x) => x.ms)),
    median_wall_ms: median(r.map((x) => x.wall)),
    within_1s: r.filter((x) => x.ms <= 1000).length + '/' + r.length,
    median_overview_request_start_ms: median(r.map((x) => x.overview_start)),
    median_overview_request_end_ms: median(r.map((x) => x.overview_end)),
    median_modules_done_ms: median(r.map((x) => x.modules_done)),
    loads: r,
  };
}
console.log(JSON.stringify({ cold, runs, pause_ms: pause, load_avg: execSync('cut -d" " -f1-3 /proc/loadavg').toString().trim(), summary, rows, js_heap_mb: heap / 1048576, cdp_heap_mb: get('JSHeapUsedSize') / 1048576, nodes: get('Nodes'), largest_chromium_process_rss_kb: rss }, null, 1));
await browser.close();
for (const s of Object.values(servers)) s.proc.kill();
