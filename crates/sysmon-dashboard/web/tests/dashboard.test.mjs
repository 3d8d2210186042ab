// Browser tests of the sysmon dashboard in real headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core), against the real `sysmon`
// binary: `sysmon standalone` (agent + ingest + dashboard in one process)
// over a temp database that `seed_db` filled first through the real ingest
// path with several other machines, one of them hostile.
//
// Run (after `cargo build -p sysmon-bin --bin sysmon -p sysmon-dashboard --example seed_db`):
//   cd crates/sysmon-dashboard/web && npm ci --no-audit --no-fund && node --test tests/
// Screenshots land in test-output/dashboard/ at the workspace root.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../../../..');
const TARGET = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
const SYSMON = process.env.SYSMON_BIN || path.join(TARGET, 'debug/sysmon');
const SEED = process.env.SYSMON_SEED_BIN || path.join(TARGET, 'debug/examples/seed_db');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OUT = path.join(ROOT, 'test-output/dashboard');
const HOSTILE_ID = 'evil"<svg onload=alert(3)>';
const HOSTILE_PROCESS = '<img src=x onerror=alert(1)>';
const HOSTILE_HOST = "<script>alert('host')</script>";
const TOKEN = 'browser-test-token';

let tmp;
let dbPath;
let standalone;
let protectedDash;
let base;
let protectedBase;
let context;
const dialogs = [];
const pageErrors = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function start(args, logName) {
  const log = fs.openSync(path.join(tmp, logName), 'w');
  const child = spawn(SYSMON, args, { stdio: ['ignore', log, log], env: { ...process.env, RUST_LOG: 'info' } });
  child.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return child;
}

async function waitHealthy(url, child, logName) {
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    try {
      const r = await fetch(url + '/healthz');
      if (r.ok) return;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`sysmon did not become healthy at ${url}; log:\n` + fs.readFileSync(path.join(tmp, logName), 'utf8'));
}

/** Waits until the live agent's first sample is stored (it comes one tick after start). */
async function waitForMachine(url, id, child, logName) {
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    try {
      const r = await fetch(url + '/api/machines');
      if (r.ok && (await r.json()).machines?.some((m) => m.machine_id === id)) return;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${id} never appeared at ${url}/api/machines; log:\n` + fs.readFileSync(path.join(tmp, logName), 'utf8'));
}

async function stop(child) {
  if (!child || child.exitCode !== null) return null;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15000);
  const r = await child.exited;
  clearTimeout(timer);
  return r;
}

before(async () => {
  for (const [what, p, how] of [
    ['the sysmon binary', SYSMON, 'cargo build -p sysmon-bin --bin sysmon'],
    ['the seed_db example', SEED, 'cargo build -p sysmon-dashboard --example seed_db'],
    ['Chromium', CHROMIUM, 'apt-get install -y chromium'],
  ]) {
    if (!fs.existsSync(p)) throw new Error(`${what} is missing at ${p}: run \`${how}\` first (scripts/test.sh does)`);
  }
  fs.mkdirSync(OUT, { recursive: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sysmon-browser-'));
  const db = path.join(tmp, 'sysmon.db');
  dbPath = db;
  // History for five workers and one hostile machine, through the real ingest path.
  execFileSync(SEED, ['--db', db, '--machines', '5', '--history', '2h', '--step', '5', '--hostile'], { stdio: 'inherit' });
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  standalone = start(['standalone', '--db', db, '--listen', `127.0.0.1:${port}`, '--machine-id', 'browser-host', '--interval', '1s'], 'standalone.log');
  await waitHealthy(base, standalone, 'standalone.log');
  await waitForMachine(base, 'browser-host', standalone, 'standalone.log');
  const port2 = await freePort();
  protectedBase = `http://127.0.0.1:${port2}`;
  protectedDash = start(['dashboard', '--db', db, '--listen', `127.0.0.1:${port2}`, '--auth-token', TOKEN], 'dashboard.log');
  await waitHealthy(protectedBase, protectedDash, 'dashboard.log');

  context = await chromium.launchPersistentContext(path.join(tmp, 'chromium-profile'), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 1000 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  context.on('page', watch);
  for (const p of context.pages()) watch(p);
});

function watch(page) {
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.on('pageerror', (e) => pageErrors.push(e.message));
}

after(async () => {
  if (context) await context.close();
  const r = await stop(standalone);
  await stop(protectedDash);
  if (r) console.log(`sysmon standalone stopped: ${JSON.stringify(r)}`);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

async function newPage() {
  const page = await context.newPage();
  return page;
}

/** Pixels of the chart's canvas close to `rgb` (proof that data was drawn, not just the grid). */
async function colouredPixels(page, chartKey, rgb) {
  return page.evaluate(([key, [r, g, b]]) => {
    const c = document.querySelector(`[data-chart="${key}"] canvas`);
    if (!c) return -1;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (Math.abs(d[i] - r) < 40 && Math.abs(d[i + 1] - g) < 40 && Math.abs(d[i + 2] - b) < 40 && d[i + 3] > 100) n++;
    }
    return n;
  }, [chartKey, rgb]);
}

test('the overview lists every machine, with the fleet aggregate', async () => {
  const page = await newPage();
  await page.goto(base + '/');
  await page.waitForSelector('body[data-ready="overview"]', { timeout: 20000 });
  const ids = await page.$$eval('tr[data-machine]', (rows) => rows.map((r) => r.dataset.machine));
  for (const id of ['worker-01', 'worker-02', 'worker-03', 'worker-04', 'worker-05', 'browser-host', HOSTILE_ID]) {
    assert.ok(ids.includes(id), `overview lists ${id}: ${JSON.stringify(ids)}`);
  }
  const statuses = await page.$$eval('tr[data-machine] [data-status]', (els) => els.map((e) => e.dataset.status));
  assert.ok(statuses.every((s) => s === 'online'), JSON.stringify(statuses));
  assert.equal(await page.textContent('[data-kpi="online"]'), String(ids.length));
  assert.ok(Number(await page.getAttribute('[data-chart="fleet-cpu"]', 'data-points')) > 10);
  assert.ok(await colouredPixels(page, 'fleet-cpu', [91, 155, 255]) > 50, 'the fleet CPU line is drawn');
  // Seeded machines have two hours of history; the live host's trend grows by push.
  const sparkPoints = await page.$$eval('tr[data-machine]', (rows) => rows
    .filter((r) => r.dataset.machine !== 'browser-host')
    .map((r) => Number(r.querySelector('canvas').dataset.points)));
  assert.ok(sparkPoints.every((n) => n >= 50), `every seeded machine has a trend line: ${sparkPoints}`);
  await page.waitForFunction(() => Number(document.querySelector('tr[data-machine="browser-host"] canvas').dataset.points) >= 3, null, { timeout: 15000 });
  const timing = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    return { firstRender: window.__sysmonFirstRender, domContentLoaded: nav.domContentLoadedEventEnd, load: nav.loadEventEnd };
  });
  console.log(`overview first render: ${timing.firstRender.toFixed(0)} ms after navigation start (DOMContentLoaded ${timing.domContentLoaded.toFixed(0)} ms) with ${ids.length} machines`);
  await page.waitForTimeout(1500);
  await page.screenshot({ path: path.join(OUT, 'overview.png'), fullPage: true });
  await page.close();
});

test('a machine page draws non-empty charts, and changing the range reloads them', async () => {
  const page = await newPage();
  await page.goto(base + '/#/machine/worker-02?range=1h');
  await page.waitForSelector('body[data-ready="machine"]', { timeout: 20000 });
  assert.equal(await page.textContent('#machine-title'), 'worker-02');
  for (const key of ['cpu', 'cores', 'memory', 'swap', 'disk', 'net', 'load']) {
    const points = Number(await page.getAttribute(`[data-chart="${key}"]`, 'data-points'));
    assert.ok(points > 50, `${key} chart holds data: ${points}`);
  }
  assert.ok(await colouredPixels(page, 'cpu', [91, 155, 255]) > 100, 'the CPU line is drawn');
  assert.ok(await colouredPixels(page, 'disk', [60, 207, 142]) > 100, 'the disk read line is drawn');
  assert.ok((await page.$$('[data-table="top-cpu"] tbody tr')).length >= 5, 'top processes by CPU');
  await page.screenshot({ path: path.join(OUT, 'machine-1h.png'), fullPage: true });

  const first1h = Number(await page.getAttribute('[data-chart="cpu"]', 'data-first'));
  const reloaded = page.waitForResponse((r) => r.url().includes('/series?') && r.url().includes('range=15m'));
  await page.click('button[data-range="15m"]');
  await reloaded;
  await page.waitForFunction((f) => Number(document.querySelector('[data-chart="cpu"]').dataset.first) > f + 1800, first1h, { timeout: 10000 });
  assert.match(page.url(), /range=15m/);
  assert.equal(await page.getAttribute('button[data-range="15m"]', 'aria-pressed'), 'true');
  const first15 = Number(await page.getAttribute('[data-chart="cpu"]', 'data-first'));
  const now = Date.now() / 1000;
  assert.ok(now - first15 <= 15 * 60 + 120, `15m range starts ${now - first15} s ago`);
  assert.ok(Number(await page.getAttribute('[data-chart="cpu"]', 'data-points')) > 20);

  // Sorting the process table by name.
  await page.click('[data-table="top-cpu"] th[data-key="name"]');
  const names = await page.$$eval('[data-table="top-cpu"] tbody tr td:nth-child(2)', (tds) => tds.map((t) => t.textContent));
  assert.deepEqual(names, [...names].sort((a, b) => a.localeCompare(b)));
  await page.close();
});

test('host details: panels for a machine that sends them, hidden for one that does not', async () => {
  // seed_db gives worker-02 the host details (synth::fill_host_details): pressure,
  // one disk, TCP states, two cgroups, a temperature sensor; worker-04 sends none.
  const page = await newPage();
  await page.goto(base + '/#/machine/worker-02?range=15m');
  await page.waitForSelector('body[data-ready="machine"]', { timeout: 20000 });
  const latest = await (await fetch(base + '/api/machines/worker-02/latest')).json();
  assert.ok(latest.pressure && latest.disks.length && latest.tcp && latest.top_cpu_cgroups.length && latest.temperatures.length,
    'the stored snapshot carries the host details');
  for (const key of ['pressure', 'disks', 'tcp', 'containers', 'temperatures']) {
    assert.ok(await page.isVisible(`[data-panel="${key}"]`), `${key} panel is shown`);
  }
  // Pressure: a row per resource, CPU some avg10 as the stored value.
  const psi = await page.$$eval('[data-table="pressure"] tbody tr', (trs) => trs.map((t) => t.dataset.resource));
  assert.deepEqual(psi, ['cpu', 'memory', 'io']);
  const cpuPsi = await page.textContent('[data-table="pressure"] tr[data-resource="cpu"] td:nth-child(2)');
  assert.ok(cpuPsi.includes(latest.pressure.cpu.some.avg10.toFixed(1) + ' %'), cpuPsi);
  // Disks: device, IOPS, latency, utilisation.
  const disk = await page.$$eval('[data-table="disks"] tbody tr td', (tds) => tds.map((t) => t.textContent));
  const d = latest.disks[0];
  assert.equal(disk[0], 'nvme0n1');
  assert.equal(disk[1], d.read_iops.toFixed(1));
  assert.equal(disk[4], d.write_latency_ms.toFixed(2) + ' ms');
  assert.ok(disk[5].includes(d.utilization_percent.toFixed(1) + ' %'), disk[5]);
  // TCP: established is v4 + v6.
  const est = await page.$$eval('[data-table="tcp"] tr[data-state="established"] td', (tds) => tds.map((t) => t.textContent));
  assert.deepEqual(est, ['established', String(latest.tcp.v4.established), String(latest.tcp.v6.established),
    String(latest.tcp.v4.established + latest.tcp.v6.established)]);
  assert.ok((await page.textContent('[data-table="tcp"] tr[data-state="time_wait"]')).includes('35'));
  // Containers: both groups, with kind, memory and limit.
  const groups = await page.$$eval('[data-table="containers"] tbody tr', (trs) => trs.map((t) => t.textContent));
  assert.equal(groups.length, 2, groups.join('\n'));
  assert.ok(groups.some((g) => g.includes('postgresql') && g.includes('service') && g.includes('2.1 GB')), groups.join('\n'));
  assert.ok(groups.some((g) => g.includes('3f1c2b9a8d7e') && g.includes('docker')), groups.join('\n'));
  const temps = await page.textContent('[data-table="temperatures"]');
  assert.ok(temps.includes('coretemp Package id 0') && temps.includes(latest.temperatures[0].celsius.toFixed(1) + ' °C'), temps);
  await page.screenshot({ path: path.join(OUT, 'machine-host-details.png'), fullPage: true });

  // A machine without host details: every such panel hidden, the rest as before.
  await page.goto(base + '/#/machine/worker-04?range=15m');
  await page.waitForFunction(() => document.querySelector('#machine-title').textContent === 'worker-04', null, { timeout: 20000 });
  await page.waitForSelector('body[data-ready="machine"]', { timeout: 20000 });
  for (const key of ['pressure', 'disks', 'tcp', 'containers', 'temperatures']) {
    assert.equal(await page.isVisible(`[data-panel="${key}"]`), false, `${key} panel is hidden`);
  }
  assert.ok((await page.$$('[data-table="top-cpu"] tbody tr')).length >= 5, 'top processes still shown');
  assert.deepEqual(pageErrors, [], 'no script errors');
  await page.close();
});

test('a pushed update changes the page without a reload', async () => {
  const page = await newPage();
  await page.goto(base + '/#/machine/browser-host?range=5m');
  await page.waitForSelector('body[data-ready="machine"]', { timeout: 20000 });
  await page.waitForSelector('#live[data-state="live"]', { timeout: 10000 });
  assert.equal(await page.textContent('#live-label'), 'Live');
  await page.evaluate(() => { window.__noReload = 'still here'; });
  const before = {
    points: Number(await page.getAttribute('[data-chart="cpu"]', 'data-points')),
    last: Number(await page.getAttribute('[data-chart="cpu"]', 'data-last')),
    events: await page.evaluate(() => (window.__sysmonLive ? window.__sysmonLive.events : 0)),
  };
  // The agent samples every second: within a few seconds new points arrive by push.
  await page.waitForFunction((b) => Number(document.querySelector('[data-chart="cpu"]').dataset.last) > b.last
    && window.__sysmonLive && window.__sysmonLive.events >= b.events + 2, before, { timeout: 15000 });
  const afterLast = Number(await page.getAttribute('[data-chart="cpu"]', 'data-last'));
  assert.ok(afterLast > before.last, 'the CPU chart grew by pushed samples');
  assert.equal(await page.evaluate(() => window.__noReload), 'still here', 'no reload happened');
  assert.equal(await page.evaluate(() => performance.getEntriesByType('navigation').length), 1);
  await page.screenshot({ path: path.join(OUT, 'machine-live.png'), fullPage: true });

  // The overview updates in place too.
  await page.goto(base + '/');
  await page.waitForSelector('body[data-ready="overview"]', { timeout: 20000 });
  await page.evaluate(() => { window.__noReload = 'overview'; });
  const ev0 = await page.evaluate(() => (window.__sysmonLive ? window.__sysmonLive.events : 0));
  await page.waitForFunction((e) => window.__sysmonLive && window.__sysmonLive.events >= e + 2, ev0, { timeout: 15000 });
  const flashed = await page.$$eval('tr[data-machine="browser-host"].flash', (r) => r.length);
  assert.equal(flashed, 1, 'the pushed row was updated');
  assert.equal(await page.evaluate(() => window.__noReload), 'overview');
  await page.close();
});

test('hostile agent strings render as text, and nothing fires', async () => {
  const page = await newPage();
  const hash = '#/machine/' + encodeURIComponent(HOSTILE_ID) + '?range=15m';
  await page.goto(base + '/' + hash);
  await page.waitForSelector('body[data-ready="machine"]', { timeout: 20000 });
  assert.equal(await page.textContent('#machine-title'), HOSTILE_ID);
  assert.equal(await page.title(), 'sysmon · ' + HOSTILE_ID);
  const procText = await page.textContent('[data-table="top-cpu"] tbody');
  assert.ok(procText.includes(HOSTILE_PROCESS), procText);
  const cellTitle = await page.$eval('[data-table="top-cpu"] tbody tr td.name', (td) => td.getAttribute('title'));
  assert.ok([cellTitle].concat(await page.$$eval('[data-table="top-cpu"] td.name', (t) => t.map((x) => x.getAttribute('title')))).includes(HOSTILE_PROCESS));
  assert.ok((await page.textContent('.page-head')).includes(HOSTILE_HOST));
  assert.equal(await page.$$eval('img', (i) => i.length), 0, 'no <img> was injected');
  assert.equal(await page.$$eval('main svg, main script', (i) => i.length), 0, 'no <svg>/<script> was injected');
  assert.equal(await page.$$eval('b[onmouseover]', (i) => i.length), 0);
  await page.hover('[data-table="top-cpu"] tbody tr td.name');
  await page.waitForTimeout(1500);
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(OUT, 'hostile-machine.png'), fullPage: true });
  await page.goto(base + '/');
  await page.waitForSelector('body[data-ready="overview"]', { timeout: 20000 });
  const row = await page.textContent(`tr[data-machine="${HOSTILE_ID.replace(/"/g, '\\"')}"]`);
  assert.ok(row.includes(HOSTILE_ID) && row.includes(HOSTILE_HOST), row);
  assert.deepEqual(dialogs, [], 'no alert/confirm/prompt dialog fired');
  assert.deepEqual(pageErrors, [], 'no script errors');
  await page.close();
});

test('alerts and anomalies page: the firing alert, the anomalies, marked on the scatter', async () => {
  // seed_db ran the history through the analytics: worker-01 at 95 % CPU for its
  // last 10 minutes (cpu_high fires), worker-03 with a CPU spike 30 minutes ago.
  const page = await newPage();
  await page.goto(base + '/#/alerts?range=1h');
  await page.waitForSelector('body[data-ready="alerts"]', { timeout: 20000 });
  assert.ok(Number(await page.getAttribute('[data-chart="scatter"]', 'data-points')) > 20);
  assert.ok(await colouredPixels(page, 'scatter', [91, 155, 255]) > 100, 'scatter points are drawn');
  assert.ok(await colouredPixels(page, 'scatter', [255, 107, 107]) > 10, 'anomalies are drawn in red');
  // Grouped by rule: the cpu_high group counts its alerts and lists worker-01 firing.
  const alertRows = await page.$$eval('[data-alert-group="cpu_high"] [data-table="alerts"] tbody tr', (trs) => trs.map((t) => t.textContent));
  assert.ok(alertRows.some((r) => r.includes('firing') && r.includes('worker-01')), alertRows.join('\n'));
  const group = await page.$eval('[data-alert-group="cpu_high"]', (d) => ({ count: Number(d.dataset.count), summary: d.querySelector('summary').textContent, open: d.open }));
  assert.equal(group.count, alertRows.length, JSON.stringify(group));
  assert.ok(group.summary.includes('cpu_high') && group.summary.includes(`${group.count} alert`), group.summary);
  assert.ok(group.open, 'a small group starts open');
  await page.click('[data-alert-group="cpu_high"] > summary');
  assert.equal(await page.$eval('[data-alert-group="cpu_high"]', (d) => d.open), false, 'the group collapses');
  await page.click('[data-alert-group="cpu_high"] > summary');
  const anomalyRows = await page.$$eval('[data-table="anomalies"] tbody tr', (trs) => trs.map((t) => t.textContent));
  assert.ok(anomalyRows.some((r) => r.includes('worker-03')), anomalyRows.join('\n'));
  assert.ok(!(await page.textContent('main')).includes('not running on this server yet'));
  await page.screenshot({ path: path.join(OUT, 'alerts.png'), fullPage: true });

  // The machine page shows them too, and the dashed 5-minute forecast.
  await page.goto(base + '/#/machine/worker-01?range=1h');
  await page.waitForSelector('body[data-ready="machine"]', { timeout: 20000 });
  await page.waitForFunction(() => document.querySelector('main').textContent.includes('cpu_high'), null, { timeout: 10000 });
  assert.ok((await page.textContent('[data-chart="cpu"]')).includes('forecast (5 min)'), 'the CPU chart has its forecast series');
  await page.screenshot({ path: path.join(OUT, 'machine-alerts-forecast.png'), fullPage: true });

  // worker-03's spike: one anomaly episode (start, duration, peak, metrics) on its page.
  await page.goto(base + '/#/machine/worker-03?range=1h');
  await page.waitForSelector('body[data-ready="machine"]', { timeout: 20000 });
  await page.waitForSelector('[data-table="episodes"] tbody tr', { timeout: 10000 });
  const episodeRows = await page.$$eval('[data-table="episodes"] tbody tr', (trs) => trs.map((t) => t.textContent));
  assert.ok(episodeRows.length >= 1 && episodeRows.some((r) => r.includes('cpu')), episodeRows.join('\n'));
  await page.close();
});

test('with --auth-token the login form sets a cookie that opens the dashboard', async () => {
  const page = await newPage();
  const r = await page.goto(protectedBase + '/');
  assert.match(page.url(), /\/login$/);
  assert.ok(r);
  const api = await page.request.get(protectedBase + '/api/machines');
  assert.equal(api.status(), 401);
  await page.fill('#token', 'wrong');
  await page.click('button[type="submit"]');
  assert.ok((await page.textContent('body')).includes('not valid'));
  await page.screenshot({ path: path.join(OUT, 'login.png') });
  await page.fill('#token', TOKEN);
  await Promise.all([page.waitForURL(protectedBase + '/'), page.click('button[type="submit"]')]);
  await page.waitForSelector('body[data-ready="overview"]', { timeout: 20000 });
  assert.ok((await page.$$('tr[data-machine]')).length >= 6);
  const cookies = await context.cookies(protectedBase);
  const c = cookies.find((x) => x.name === 'sysmon_session');
  assert.ok(c && c.httpOnly, 'HttpOnly session cookie');
  assert.equal(await page.evaluate(() => document.cookie.includes('sysmon_session')), false, 'scripts cannot read it');

  // The live indicator: the server goes away -> "Reconnecting…"; it comes back -> "Live" again.
  await page.waitForSelector('#live[data-state="live"]', { timeout: 10000 });
  await stop(protectedDash);
  await page.waitForSelector('#live[data-state="reconnecting"]', { timeout: 10000 });
  assert.equal(await page.textContent('#live-label'), 'Reconnecting…');
  await page.screenshot({ path: path.join(OUT, 'reconnecting.png') });
  protectedDash = start(['dashboard', '--db', dbPath, '--listen', protectedBase.replace('http://', ''), '--auth-token', TOKEN], 'dashboard2.log');
  await waitHealthy(protectedBase, protectedDash, 'dashboard2.log');
  await page.waitForSelector('#live[data-state="live"]', { timeout: 15000 });
  await page.close();
});
