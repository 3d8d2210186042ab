// The overview in headless Chromium against a filled fleet database (e.g. the one
// examples/bench_fleet fills): time from navigation to the first machine rows over five
// full loads, then the JS heap and the largest Chromium process RSS.
//   cd crates/sysmon-dashboard/web && DB=/tmp/fleet-rel.db node bench/tab.mjs
import { chromium } from 'playwright-core';
import { spawn, execSync } from 'node:child_process';
const port = 38000 + Math.floor(Math.random() * 1000);
const base = `http://127.0.0.1:${port}`;
const dash = spawn(process.env.SYSMON || '../../../target/release/sysmon', ['dashboard', '--db', process.env.DB || '/tmp/fleet-rel.db', '--listen', `127.0.0.1:${port}`, '--log-level', 'warn'], { stdio: 'ignore' });
for (let i = 0; i < 100; i++) { try { const r = await fetch(base + '/healthz'); if (r.ok) break; } catch {} await new Promise((r) => setTimeout(r, 100)); }
await fetch(base + '/api/machines'); // warm the fleet index, as a running dashboard has it
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox', '--enable-precise-memory-info'] });
const page = await browser.newPage();
const results = [];
for (let run = 0; run < 5; run++) {
  await page.goto('about:blank'); const t1 = Date.now(); await page.goto(base + '/#/?range=15m');
  await page.waitForSelector('tr[data-machine]', { timeout: 30000 });
  results.push(Date.now() - t1);
}
await page.waitForTimeout(3000);
const heap = await page.evaluate(() => performance.memory ? performance.memory.usedJSHeapSize : -1);
const rows = await page.$$eval('tr[data-machine]', (t) => t.length);
const cdp = await page.context().newCDPSession(page);

await cdp.send('Performance.enable');
const m2 = (await cdp.send('Performance.getMetrics')).metrics;
const get = (n) => (m2.find((x) => x.name === n) || {}).value;
let rss = 'n/a';
try { rss = execSync("ps -o rss= -C chromium | sort -n | tail -1").toString().trim(); } catch {}
console.log(JSON.stringify({ first_rows_ms: results, rows, js_heap_mb: heap / 1048576, cdp_heap_mb: get('JSHeapUsedSize') / 1048576, nodes: get('Nodes'), largest_chromium_process_rss_kb: rss }));
await browser.close();
dash.kill();
