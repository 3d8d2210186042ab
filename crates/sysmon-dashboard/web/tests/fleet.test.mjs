// Browser tests of the fleet-scale views (issue 16) in real headless Chromium
// against the real `sysmon dashboard` over a SQLite database that `seed_db
// --fleet` filled through the real ingest path with 150 machines named
// loadgen-0 .. loadgen-149 (natural order matters), labelled role=db/web/cache:
// the machine table's server-side sort, search, filters and paging, the fleet
// map (hover, click through), the top-N panels, the compare view, the fleet
// chart grouped by a label, and an alert storm grouped by rule on the server.
//
// Run (after `cargo build -p sysmon-bin --bin sysmon -p sysmon-dashboard --example seed_db`):
//   cd crates/sysmon-dashboard/web && node --test tests/
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
const FLEET = 150;
// An alert storm: cpu_high fires on loadgen-0 .. loadgen-{STORM-1}.
const STORM = 120;

let tmp;
let dash;
let base;
let context;
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

async function api(p) {
  const r = await fetch(base + p);
  assert.equal(r.status, 200, p);
  return r.json();
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
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sysmon-fleet-browser-'));
  const db = path.join(tmp, 'fleet.db');
  execFileSync(SEED, ['--db', db, '--machines', '0', '--fleet', String(FLEET), '--storm', String(STORM), '--history', '10m', '--step', '30'], { stdio: 'inherit' });
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const log = fs.openSync(path.join(tmp, 'dashboard.log'), 'w');
  dash = spawn(SYSMON, ['dashboard', '--db', db, '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', log, log] });
  dash.exited = new Promise((resolve) => dash.on('exit', (code, signal) => resolve({ code, signal })));
  const deadline = Date.now() + 30000;
  for (;;) {
    try { if ((await fetch(base + '/healthz')).ok) break; } catch { /* not yet */ }
    if (Date.now() > deadline || dash.exitCode !== null) throw new Error('dashboard not healthy: ' + fs.readFileSync(path.join(tmp, 'dashboard.log'), 'utf8'));
    await new Promise((r) => setTimeout(r, 200));
  }
  context = await chromium.launchPersistentContext(path.join(tmp, 'chromium-profile'), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 1000 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--enable-precise-memory-info'],
  });
  context.on('page', (p) => p.on('pageerror', (e) => pageErrors.push(e.message)));
});

after(async () => {
  if (context) await context.close();
  if (dash && dash.exitCode === null) {
    dash.kill('SIGTERM');
    await dash.exited;
  }
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  assert.deepEqual(pageErrors, [], 'no script errors on any page');
});

async function overview() {
  const page = await context.newPage();
  await page.goto(base + '/');
  await page.waitForSelector('body[data-ready="overview"]', { timeout: 20000 });
  return page;
}

const rowIds = (page) => page.$$eval('tr[data-machine]', (rows) => rows.map((r) => r.dataset.machine));

async function waitRows(page, first, count) {
  await page.waitForFunction(([f, n]) => {
    const rows = document.querySelectorAll('tr[data-machine]');
    return rows.length === n && rows[0].dataset.machine === f;
  }, [first, count], { timeout: 10000 });
}

test('the machine table pages, sorts, searches and filters on the server', async () => {
  const page = await overview();
  let ids = await rowIds(page);
  assert.equal(ids.length, 100, 'one page of 100');
  assert.deepEqual(ids.slice(0, 12), Array.from({ length: 12 }, (_, i) => `loadgen-${i}`), 'natural order');
  assert.equal(await page.textContent('[data-page-info]'), `1–100 of ${FLEET}`);
  assert.equal(await page.textContent('[data-kpi="online"]'), String(FLEET));
  const memory = await page.evaluate(() => (performance.memory ? performance.memory.usedJSHeapSize : 0));
  const timing = await page.evaluate(() => window.__sysmonFirstRender);
  // The first page came from the request boot.js started before the modules
  // loaded (its parameters match overview.js's: the two are kept in step).
  assert.equal(await page.evaluate(() => window.__sysmonPrefetchUsed), 1, 'boot.js prefetch adopted');
  console.log(`fleet overview (${FLEET} machines): first rows ${timing.toFixed(0)} ms after navigation start, JS heap ${(memory / 1048576).toFixed(1)} MB`);

  // Next page, previous page.
  await page.click('[data-page="next"]');
  await waitRows(page, 'loadgen-100', FLEET - 100);
  assert.equal(await page.textContent('[data-page-info]'), `101–${FLEET} of ${FLEET}`);
  assert.ok(await page.isDisabled('[data-page="next"]'));
  await page.click('[data-page="prev"]');
  await waitRows(page, 'loadgen-0', 100);

  // Sort by CPU (highest first), as the API sorts it over the whole fleet.
  await page.click('th[data-sort="cpu"]');
  const byCpu = (await api('/api/machines?sort=cpu&limit=100')).machines.map((m) => m.machine_id);
  await waitRows(page, byCpu[0], 100);
  assert.deepEqual(await rowIds(page), byCpu);
  assert.equal(await page.getAttribute('th[data-sort="cpu"]', 'aria-sort'), 'descending');
  // Again: lowest first.
  await page.click('th[data-sort="cpu"]');
  const byCpuAsc = (await api('/api/machines?sort=cpu&order=asc&limit=100')).machines.map((m) => m.machine_id);
  await waitRows(page, byCpuAsc[0], 100);
  assert.deepEqual(await rowIds(page), byCpuAsc);
  await page.click('th[data-sort="machine_id"]');
  await waitRows(page, 'loadgen-0', 100);

  // Search: id substring.
  await page.fill('[data-filter="q"]', 'loadgen-14');
  await waitRows(page, 'loadgen-14', 11);
  assert.deepEqual(await rowIds(page), ['loadgen-14', ...Array.from({ length: 10 }, (_, i) => `loadgen-${140 + i}`)]);
  assert.equal(await page.textContent('[data-page-info]'), '1–11 of 11');
  // Label filter on top of the search: 14 % 3 = 2 (cache), 141, 144, 147 are db.
  await page.fill('[data-filter="label"]', 'role:db');
  await page.press('[data-filter="label"]', 'Enter');
  await waitRows(page, 'loadgen-141', 3);
  assert.deepEqual(await rowIds(page), ['loadgen-141', 'loadgen-144', 'loadgen-147']);
  // Status filter: nobody is offline.
  await page.selectOption('[data-filter="status"]', 'offline');
  await page.waitForSelector('text=No machine matches', { timeout: 10000 });
  await page.screenshot({ path: path.join(OUT, 'fleet-table.png'), fullPage: false });
  await page.close();
});

test('the pressure and busiest-container columns show host details, "–" where absent, and sort on the server', async () => {
  // seed_db gives every seventh machine host details (PSI, cgroups); the rest send none.
  const detailed = Array.from({ length: FLEET }, (_, i) => i).filter((i) => i % 7 === 0).length;
  const page = await overview();
  const cells = (col) => page.$$eval(`tr[data-machine] td[data-col="${col}"]`, (tds) => tds.map((t) => t.textContent));
  // Natural order: loadgen-0 has details, loadgen-1 has none.
  const psi0 = await cells('pressure');
  const box0 = await cells('container');
  const first = (await api('/api/machines?limit=2')).machines;
  assert.ok(psi0[0].endsWith(' %') && first[0].pressure_cpu !== null, psi0[0]);
  assert.equal(psi0[0], `${first[0].pressure_cpu.toFixed(1)} %`);
  assert.equal(box0[0], `${first[0].busiest_container.name} · ${first[0].busiest_container.cpu_percent.toFixed(1)} %`);
  assert.equal(psi0[1], '–');
  assert.equal(box0[1], '–');

  for (const [col, key, field] of [['container', 'container_cpu_percent', (m) => m.busiest_container && m.busiest_container.cpu_percent],
    ['pressure', 'pressure_cpu_some_avg10', (m) => m.pressure_cpu]]) {
    // Highest first, as the API sorts the whole fleet; machines without a value last.
    await page.click(`th[data-sort="${key}"]`);
    const want = (await api(`/api/machines?sort=${key}&limit=100`)).machines;
    await waitRows(page, want[0].machine_id, 100);
    assert.deepEqual(await rowIds(page), want.map((m) => m.machine_id), key);
    assert.equal(await page.getAttribute(`th[data-sort="${key}"]`, 'aria-sort'), 'descending');
    const vals = want.map(field);
    assert.ok(vals.slice(0, detailed).every((v) => typeof v === 'number'), `${key}: values first`);
    assert.ok(vals.slice(detailed).every((v) => v === null), `${key}: absent last`);
    for (let i = 1; i < detailed; i++) assert.ok(vals[i - 1] >= vals[i], `${key} descending at ${i}`);
    const shown = await cells(col);
    assert.ok(shown.slice(0, detailed).every((t) => t.endsWith(' %')), `${key}: ${shown.slice(0, detailed)}`);
    assert.ok(shown.slice(detailed).every((t) => t === '–'), `${key}: absent shown as –`);
    // Lowest first: still absent last.
    await page.click(`th[data-sort="${key}"]`);
    const asc = (await api(`/api/machines?sort=${key}&order=asc&limit=100`)).machines;
    await waitRows(page, asc[0].machine_id, 100);
    assert.deepEqual(await rowIds(page), asc.map((m) => m.machine_id), `${key} asc`);
    assert.ok(asc.slice(0, detailed).every((m) => typeof field(m) === 'number'), `${key} asc: values first`);
  }
  await page.screenshot({ path: path.join(OUT, 'fleet-host-detail-columns.png'), fullPage: false });
  await page.click('th[data-sort="machine_id"]');
  await waitRows(page, 'loadgen-0', 100);
  await page.close();
});

test('the fleet map draws every machine; hover names one, click opens it', async () => {
  const page = await overview();
  await page.waitForSelector('[data-panel="map"][data-ready]', { timeout: 20000 });
  assert.equal(await page.getAttribute('canvas[data-map]', 'data-cells'), String(FLEET));
  const painted = await page.evaluate(() => {
    const c = document.querySelector('canvas[data-map]');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 200) n++;
    return n;
  });
  assert.ok(painted > FLEET * 20, `cells are painted: ${painted} px`);
  const centre = await page.evaluate(() => document.querySelector('canvas[data-map]').cellCentre('loadgen-42'));
  assert.ok(centre, 'loadgen-42 has a cell');
  const box = await (await page.$('canvas[data-map]')).boundingBox();
  await page.mouse.move(box.x + centre.x, box.y + centre.y);
  await page.waitForSelector('[data-map-tip][data-machine="loadgen-42"]', { state: 'visible', timeout: 5000 });
  const tip = await page.textContent('[data-map-tip]');
  const cpu = (await api('/api/map?metric=cpu')).values[(await api('/api/map?metric=cpu')).ids.indexOf('loadgen-42')];
  assert.ok(tip.startsWith('loadgen-42'), tip);
  assert.ok(tip.includes(cpu.toFixed(1)), `${tip} shows ${cpu}`);

  // Another metric, grouped by role: the spread table has one row per role.
  await page.selectOption('[data-map-metric]', 'memory');
  await page.fill('[data-map-group]', 'role');
  await page.waitForFunction(() => document.querySelectorAll('[data-table="spread"] tr[data-group]').length === 4, null, { timeout: 10000 });
  const groups = await page.$$eval('[data-table="spread"] tr[data-group]', (trs) => trs.map((t) => t.dataset.group));
  assert.deepEqual(groups.slice(1).sort(), ['cache', 'db', 'web']);
  const c2 = await page.evaluate(() => document.querySelector('canvas[data-map]').cellCentre('loadgen-42'));
  const box2 = await (await page.$('canvas[data-map]')).boundingBox();
  await page.screenshot({ path: path.join(OUT, 'fleet-map.png'), fullPage: false });
  await page.mouse.click(box2.x + c2.x, box2.y + c2.y);
  await page.waitForFunction(() => decodeURIComponent(window.location.hash).startsWith('#/machine/loadgen-42'), null, { timeout: 5000 });
  await page.waitForSelector('body[data-ready="machine"]', { timeout: 20000 });
  await page.evaluate(() => { localStorage.removeItem('sysmon.map.group'); localStorage.removeItem('sysmon.map.metric'); });
  await page.close();
});

test('top-N panels show the busiest machines', async () => {
  const page = await overview();
  await page.waitForSelector('[data-top="cpu"] tr[data-machine-top]', { timeout: 10000 });
  const shown = await page.$$eval('[data-top="cpu"] tr[data-machine-top]', (trs) => trs.map((t) => t.dataset.machineTop));
  const want = (await api('/api/top?metric=cpu&n=8')).machines.map((m) => m.machine_id);
  assert.deepEqual(shown, want);
  for (const m of ['memory', 'disk_write', 'net_recv']) {
    assert.equal((await page.$$(`[data-top="${m}"] tr[data-machine-top]`)).length, 8, m);
  }
  await page.close();
});

test('compare overlays 2 to 5 machines on one chart', async () => {
  const page = await overview();
  assert.ok(await page.isDisabled('[data-compare-go]'), 'needs two machines');
  for (const id of ['loadgen-3', 'loadgen-7', 'loadgen-11']) await page.check(`input[data-compare="${id}"]`);
  assert.equal(await page.textContent('[data-compare-go]'), 'Compare 3');
  await page.click('[data-compare-go]');
  await page.waitForSelector('body[data-ready="compare"] [data-chart="compare"][data-lines="3"]', { timeout: 20000 });
  const legend = await page.$$eval('[data-chart="compare"] .u-legend .u-series th', (ths) => ths.map((t) => t.textContent.trim()));
  for (const id of ['loadgen-3', 'loadgen-7', 'loadgen-11']) assert.ok(legend.some((l) => l.includes(id)), `${id} in ${legend}`);
  assert.ok(Number(await page.getAttribute('[data-chart="compare"]', 'data-points')) >= 10);
  await page.screenshot({ path: path.join(OUT, 'compare.png'), fullPage: false });
  // Another metric keeps the machines; removing one leaves two lines.
  await page.selectOption('[data-compare-metric]', 'memory');
  await page.waitForFunction(() => window.location.hash.includes('metric=memory'), null, { timeout: 5000 });
  await page.waitForSelector('[data-chart="compare"][data-lines="3"]', { timeout: 20000 });
  await page.click('[data-chip="loadgen-7"] button');
  await page.waitForSelector('[data-chart="compare"][data-lines="2"]', { timeout: 20000 });
  assert.ok(!decodeURIComponent(await page.evaluate(() => window.location.hash)).includes('loadgen-7'));
  await page.close();
});

test('the fleet chart grouped by a label: one line per role, from the server', async () => {
  const page = await overview();
  await page.waitForSelector('[data-chart="fleet-groups"] .u-legend', { timeout: 20000 });
  const want = await api('/api/fleet?metric=cpu&range=1h&group=role&points=200');
  assert.deepEqual(want.groups.map((g) => g.name).sort(), ['cache', 'db', 'web']);
  const legend = await page.$$eval('[data-chart="fleet-groups"] .u-legend .u-series th', (ths) => ths.map((t) => t.textContent.trim()));
  for (const g of want.groups) assert.ok(legend.some((l) => l.startsWith(`${g.name} (${g.machines})`)), `${g.name} in ${legend}`);
  assert.match(await page.textContent('[data-group-note]'), /p95 of cpu per role · 3 groups · 150 machines/);
  // Another label nobody has: the panel says so instead of drawing one line.
  await page.fill('[data-group-by]', 'rack');
  await page.press('[data-group-by]', 'Enter');
  await page.waitForSelector('[data-chart="fleet-groups"] >> text=No machine has the label', { timeout: 10000 });
  await page.fill('[data-group-by]', 'role');
  await page.press('[data-group-by]', 'Enter');
  await page.selectOption('[data-group-stat]', 'max');
  await page.waitForFunction(() => (document.querySelector('[data-group-note]').textContent || '').startsWith('max of cpu'), null, { timeout: 10000 });
  await page.screenshot({ path: path.join(OUT, 'fleet-groups.png'), fullPage: false });
  await page.evaluate(() => localStorage.removeItem('sysmon.groupBy'));
  await page.close();
});

test('an alert storm is grouped by rule on the server: one group, its count, a bounded list', async () => {
  // The API: the whole storm counted, only per_group listed.
  const flat = await api('/api/alerts');
  const grouped = await api('/api/alerts?group=rule&per_group=5');
  const cpu = grouped.groups.find((g) => g.rule === 'cpu_high');
  assert.equal(cpu.count, STORM, JSON.stringify(grouped).slice(0, 500));
  assert.equal(cpu.alerts.length, 5);
  assert.equal(cpu.more, STORM - 5);
  assert.deepEqual(cpu.alerts.map((a) => a.machine_id), ['loadgen-0', 'loadgen-1', 'loadgen-2', 'loadgen-3', 'loadgen-4'], 'natural order');
  assert.ok(JSON.stringify(grouped).length * 5 < JSON.stringify(flat).length, 'the grouped answer is a fraction of the list');

  const page = await context.newPage();
  const asked = [];
  page.on('request', (r) => { if (r.url().includes('/api/alerts')) asked.push(r.url()); });
  await page.goto(base + '/#/alerts?range=1h');
  await page.waitForSelector('body[data-ready="alerts"]', { timeout: 20000 });
  assert.ok(asked.length >= 1 && asked.every((u) => u.includes('group=rule')), asked.join('\n'));
  const group = await page.$eval('[data-alert-group="cpu_high"]', (d) => ({ count: Number(d.dataset.count), summary: d.querySelector('summary').textContent, open: d.open }));
  assert.equal(group.count, STORM);
  assert.ok(group.summary.includes(`${STORM} alerts`) && group.summary.includes(`${STORM} firing`), group.summary);
  assert.equal(group.open, false, 'a storm starts collapsed');
  await page.click('[data-alert-group="cpu_high"] > summary');
  const rows = await page.$$eval('[data-alert-group="cpu_high"] [data-table="alerts"] tbody tr', (trs) => trs.map((t) => t.children[1].textContent));
  assert.equal(rows.length, STORM);
  assert.deepEqual(rows.slice(0, 3), ['loadgen-0', 'loadgen-1', 'loadgen-2']);
  await page.screenshot({ path: path.join(OUT, 'alert-storm.png'), fullPage: false });
  await page.close();
});
