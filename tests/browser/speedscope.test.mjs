// speedscope.test.mjs: `memtrace export --format speedscope` and
// `--format pprof` opened by speedscope itself (the npm package's app, in
// Debian's chromium driven by playwright-core), the way its own
// `speedscope FILE` command opens a file (#localProfilePath, a script that
// hands the file to speedscope.loadFileFromBase64). Run through ./run.
//
// For known_allocs: the importer takes the file without an error, the
// speedscope file shows its first profile of four, and the sandwich view
// lists big_peak's 10 MiB (speedscope writes "10.00 MB") as the largest
// self size; pprof is imported as pprof with inuse_space, the same row.
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
const APP = path.join(here, 'node_modules', 'speedscope', 'dist', 'release', 'index.html');

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
function memtrace(args) {
  return execFileSync(MEMTRACE, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mt-speedscope-'));
const capture = path.join(tmp, 'known.bin');
memtrace(['run', '-q', '-o', capture, '--', path.join(BUILD, 'tests', 'progs', 'known_allocs')]);
const speedscopeFile = path.join(tmp, 'known.speedscope.json');
const pprofFile = path.join(tmp, 'known.pb.gz');
memtrace(['export', capture, '--format', 'speedscope', '-o', speedscopeFile]);
memtrace(['export', capture, '--format', 'pprof', '-o', pprofFile]);

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'mt-chromium-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--no-first-run', '--disable-sync'],
});

/* Opens file in speedscope as its CLI does; returns the page once the
 * import is done, with the console lines and page errors collected. */
async function load(file) {
  const loader = path.join(tmp, path.basename(file) + '.js');
  const b64 = fs.readFileSync(file).toString('base64');
  fs.writeFileSync(loader, `speedscope.loadFileFromBase64(${JSON.stringify(path.basename(file))}, ${JSON.stringify(b64)});\n`);
  const page = await browser.newPage();
  const log = { lines: [], errors: [] };
  page.on('console', (m) => {
    log.lines.push(m.text());
    if (m.type() === 'error') log.errors.push(m.text());
  });
  page.on('pageerror', (e) => log.errors.push(String(e)));
  await page.goto(`${pathToFileURL(APP).href}#localProfilePath=${loader}`);
  await page.waitForFunction(() => document.body.innerText.includes('Sandwich') &&
                             !document.body.innerText.includes('Welcome to'));
  await page.waitForTimeout(300);
  return { page, log };
}

/* The sandwich view's rows as [total, self, name]. */
async function sandwich(page) {
  await page.keyboard.press('3');
  await page.waitForFunction(() => document.body.innerText.includes('Symbol Name'));
  const text = await page.evaluate(() => document.body.innerText);
  const rows = [];
  const re = /^(\S+ \S+) \([^)]*\)\n\s*(\S+ \S+) \([^)]*\)\n\s*(.+)$/gm;
  for (let m; (m = re.exec(text));) rows.push([m[1], m[2], m[3].trim()]);
  return { text, rows };
}

try {
  await check('speedscope imports the speedscope export', async () => {
    const { page, log } = await load(speedscopeFile);
    assert(log.lines.some((l) => l.includes('Importing as speedscope json file')),
           `import log: ${log.lines.join(' | ')}`);
    const top = await page.evaluate(() => document.body.innerText);
    assert(top.includes('live at the high-water mark (bytes) (1/4)'), `toolbar: ${top.slice(0, 300)}`);
    const { text, rows } = await sandwich(page);
    assert(rows.length > 0, `sandwich rows: ${text}`);
    const first = rows[0];
    equal(first.join(' | '), '10.00 MB | 10.00 MB | big_peak (known_allocs.c:67)', 'largest self size');
    assert(rows.some((r) => r[2] === 'make_small (known_allocs.c:21)' && r[1] === '3.91 KB'),
           `make_small's 4000 bytes: ${JSON.stringify(rows)}`);
    equal(log.errors.join('\n'), '', 'errors');
    await page.close();
  });

  await check('speedscope imports the pprof export (inuse_space)', async () => {
    const { page, log } = await load(pprofFile);
    assert(log.lines.some((l) => l.includes('Importing as protobuf encoded pprof file')),
           `import log: ${log.lines.join(' | ')}`);
    const { text, rows } = await sandwich(page);
    assert(rows.length > 0, `sandwich rows: ${text}`);
    equal(rows[0].join(' | '), '10.00 MB | 10.00 MB | big_peak', 'largest self size');
    assert(rows.some((r) => r[2] === 'make_small' && r[1] === '3.91 KB'),
           `make_small's 4000 bytes: ${JSON.stringify(rows)}`);
    equal(log.errors.join('\n'), '', 'errors');
    await page.close();
  });
} finally {
  await browser.close();
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.rmSync(profile, { recursive: true, force: true });
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
