// flamegraph.test.mjs: `memtrace flamegraph` pages in a real browser
// (Debian's chromium, driven by playwright-core; run through ./run, which
// installs playwright-core and skips without node or chromium).
//
// 1. known_allocs at the peak: no console error, big_peak is drawn, its
//    tooltip shows its bytes and line, clicking zooms into it, Reset zooms
//    out, the search highlights frames and shows their share.
// 2. A Python capture (when the extension is built): the import-time
//    toggle folds frames into "[import time]"; the screenshot of this page
//    goes to $MT_BUILD/flamegraph.png (and, with MT_UPDATE_DOCS=1, to
//    docs/flamegraph.png for the README).
// 3. A capture whose function and file names are markup and script: they
//    show as text, no dialog opens, no element comes out of them.
//
// Prints "N passed, N failed" and exits 1 on any failure.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const SOURCE = path.resolve(process.env.MT_SOURCE || path.join(here, '..', '..'));
const BUILD = path.resolve(process.env.MT_BUILD || path.join(SOURCE, 'build'));
const MEMTRACE = path.join(BUILD, 'memtrace');
const CHROMIUM = process.env.MT_CHROMIUM || '/usr/bin/chromium';
const HOSTILE_NAME = '<img src=x onerror=alert(1)>';
const HOSTILE_FILE = '"};alert(1);//</script><script>alert(2)</script><!--';

const { chromium } = await import('playwright-core');

let passed = 0, failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok - ${name}`);
  } catch (err) {
    failed++;
    console.log(`FAIL - ${name}\n  ${String(err && err.stack || err).split('\n').join('\n  ')}`);
  }
}
function assert(cond, msg) { if (!cond) throw new Error(msg); }
function equal(a, b, msg) {
  if (a !== b) throw new Error(`${msg}: ${JSON.stringify(a)} !== ${JSON.stringify(b)}`);
}

function memtrace(args, opts = {}) {
  return execFileSync(MEMTRACE, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

/* An interpreter the build made the extension for, or null (as the e2e
 * tests find one: build/python/interpreters.txt). */
function firstPython() {
  try {
    const lines = fs.readFileSync(path.join(BUILD, 'python', 'interpreters.txt'), 'utf8').split('\n');
    const built = fs.readdirSync(path.join(BUILD, 'python', 'memtrace'));
    for (const line of lines) {
      const f = line.split('\t');
      if ((f[0] === 'build' || f[0] === 'test') && f.length === 4 &&
          built.includes('_memtrace' + f[3]) && fs.existsSync(f[1]))
        return f[1];
    }
  } catch (err) { /* no Python support in this build */ }
  return null;
}

function pythonEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env))
    if (!/^(PYTHON|MEMTRACE_|MT_)/.test(k) && k !== 'LD_PRELOAD') env[k] = v;
  return env;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mt-browser-'));
const python = firstPython();

// ---- The pages ------------------------------------------------------------
const knownCapture = path.join(tmp, 'known.bin');
memtrace(['run', '-q', '-o', knownCapture, '--rss-interval', '1', '--',
          path.join(BUILD, 'tests', 'progs', 'known_allocs')]);
const knownPage = path.join(tmp, 'known.html');
memtrace(['flamegraph', knownCapture, '-o', knownPage]);

let pyPage = null, hostilePage = null;
if (python) {
  const pyCapture = path.join(tmp, 'workload.bin');
  memtrace(['run', '-q', '-o', pyCapture, '--rss-interval', '5', '--python', python,
            path.join(here, 'workload.py')], { env: pythonEnv(), cwd: tmp });
  pyPage = path.join(tmp, 'workload.html');
  memtrace(['flamegraph', pyCapture, '-o', pyPage]);

  const script = path.join(tmp, 'hostile.py');
  fs.writeFileSync(script, [
    `NAME = ${JSON.stringify(HOSTILE_NAME)}`,
    `FILE = ${JSON.stringify(HOSTILE_FILE)}`,
    'def template():',
    '    return bytearray(8 << 20)',
    'code = template.__code__',
    'fields = {"co_name": NAME, "co_filename": FILE}',
    'if hasattr(code, "co_qualname"):',
    '    fields["co_qualname"] = NAME',
    'hostile = type(template)(code.replace(**fields), globals(), NAME)',
    'keep = hostile()',
    ''].join('\n'));
  const hostileCapture = path.join(tmp, 'hostile.bin');
  memtrace(['run', '-q', '-o', hostileCapture, '--python', python, script],
           { env: pythonEnv(), cwd: tmp });
  hostilePage = path.join(tmp, 'hostile.html');
  memtrace(['flamegraph', hostileCapture, '-o', hostilePage]);
} else {
  console.log('# no Python interpreter with the extension built: ' +
              'the Python and hostile-name pages are skipped');
}

// ---- The browser ----------------------------------------------------------
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'mt-chromium-'));
// An empty --user-data-dir: playwright passes it for a persistent context.
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--no-first-run', '--disable-sync'],
});

/* Opens file in a new page; returns the page with the console errors,
 * page errors, dialogs and requests that leave the file collected. */
async function open(file) {
  const page = await browser.newPage();
  const log = { errors: [], dialogs: [], requests: [] };
  page.on('console', (m) => { if (m.type() === 'error') log.errors.push(m.text()); });
  page.on('pageerror', (e) => log.errors.push(String(e)));
  page.on('dialog', (d) => { log.dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.on('request', (r) => { if (r.url() !== pathToFileURL(file).href) log.requests.push(r.url()); });
  await page.goto(pathToFileURL(file).href);
  await page.waitForSelector('.fg-node');
  return { page, log };
}

const box = (page, text) => page.locator('.fg-node', { hasText: new RegExp(`^${text.replace(/[[\]().*+?^$\\]/g, '\\$&')}$`) });

try {
  await check('known_allocs: peak page works', async () => {
    const { page, log } = await open(knownPage);
    const title = await page.textContent('#title');
    equal(title, 'memtrace flame graph: known.bin', 'title');
    const facts = await page.textContent('#facts');
    assert(facts.includes('10.0 MiB'), `peak in the facts: ${facts}`);
    assert(facts.includes('High-water mark'), 'view in the facts');
    assert(await page.isVisible('#chart'), 'the timeline is drawn');

    const big = box(page, 'big_peak');
    equal(await big.count(), 1, 'one big_peak box');
    await big.hover();
    const tip = await page.textContent('#tooltip');
    assert(tip.includes('big_peak') && tip.includes('known_allocs.c:67') &&
           tip.includes('10.0 MiB (10485760 bytes)') && tip.includes('1 allocation'),
           `tooltip: ${tip}`);

    const rootBefore = await page.textContent('#breadcrumb .current');
    equal(rootBefore, 'all', 'zoom root before the click');
    await big.click();
    equal(await page.textContent('#breadcrumb .current'), 'big_peak', 'zoom root after the click');
    const zoomed = await page.locator('.fg-node.zoomed').boundingBox();
    const flame = await page.locator('#flame').boundingBox();
    assert(Math.abs(zoomed.width - flame.width) < 2, 'the zoomed frame takes the full width');
    equal(await page.locator('.fg-node.zoomed').textContent(), 'big_peak', 'zoomed box');
    await page.click('#reset');
    equal(await page.textContent('#breadcrumb .current'), 'all', 'reset zoom');

    await page.fill('#search', 'big_');
    await page.waitForFunction(() => document.querySelectorAll('.fg-node.match').length > 0);
    equal(await page.locator('.fg-node.match').count(), 1, 'highlighted boxes');
    const info = await page.textContent('#match-info');
    assert(/1 frame matches: 10\.0 MiB \(99\.\d% of the total\)/.test(info), `match info: ${info}`);
    await page.fill('#search', 'no such frame anywhere');
    await page.waitForFunction(() => document.querySelectorAll('.fg-node.match').length === 0);
    equal(await page.textContent('#match-info'), 'no match', 'no match');
    await page.fill('#search', 'main');
    await page.waitForFunction(() => document.querySelectorAll('.fg-node.match').length > 0);
    if (!pyPage)
      await page.screenshot({ path: path.join(BUILD, 'flamegraph.png') });
    equal(log.errors.join('\n'), '', 'console errors');
    equal(log.requests.join('\n'), '', 'network requests');
    await page.close();
  });

  if (pyPage) {
    await check('Python capture: import-time toggle, screenshot', async () => {
      const { page, log } = await open(pyPage);
      assert(await page.isVisible('#imports-toggle'), 'the import toggle is offered');
      assert(await box(page, 'parse_records').count() >= 1, 'parse_records is drawn');
      const imports = () => page.locator('.fg-node', { hasText: /^\[import time\]$/ }).count();
      equal(await imports(), 0, '[import time] before the toggle');
      await page.check('#hide-imports');
      assert(await imports() >= 1, '[import time] after the toggle');
      assert(await page.locator('.fg-node', { hasText: /^_find_and_load$/ }).count() === 0,
             'importlib frames folded');
      await page.uncheck('#hide-imports');
      equal(await imports(), 0, '[import time] after unchecking');
      await page.fill('#search', 'records');
      await page.waitForFunction(() => document.querySelectorAll('.fg-node.match').length > 0);
      await page.locator('.fg-node', { hasText: /^main$/ }).first().hover();
      const shot = path.join(BUILD, 'flamegraph.png');
      await page.screenshot({ path: shot });
      if (process.env.MT_UPDATE_DOCS === '1')
        fs.copyFileSync(shot, path.join(SOURCE, 'docs', 'flamegraph.png'));
      equal(log.errors.join('\n'), '', 'console errors');
      equal(log.requests.join('\n'), '', 'network requests');
      await page.close();
    });

    await check('hostile names show as text and run nothing', async () => {
      const { page, log } = await open(hostilePage);
      const hostile = page.locator('.fg-node', { hasText: HOSTILE_NAME });
      equal(await hostile.count(), 1, 'the hostile function box');
      equal(await hostile.textContent(), HOSTILE_NAME, 'its text');
      await hostile.hover();
      const tip = await page.textContent('#tooltip');
      assert(tip.includes(HOSTILE_FILE + ':4'), `tooltip shows the file as text: ${tip}`);
      await hostile.click();
      equal(await page.textContent('#breadcrumb .current'), HOSTILE_NAME, 'breadcrumb text');
      await page.fill('#search', 'onerror');
      await page.waitForFunction(() => document.querySelectorAll('.fg-node.match').length > 0);
      await page.waitForTimeout(200);
      equal(await page.evaluate(() => document.querySelectorAll('img, iframe, object, embed').length), 0,
            'elements made from the data');
      equal(await page.evaluate(() => document.querySelectorAll('script').length), 2,
            'script elements');
      equal(log.dialogs.join('\n'), '', 'dialogs');
      equal(log.errors.join('\n'), '', 'console errors');
      equal(log.requests.join('\n'), '', 'network requests');
      await page.close();
    });
  }
} finally {
  await browser.close();
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.rmSync(profile, { recursive: true, force: true });
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
