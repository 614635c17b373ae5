// speedscope_schema.test.mjs: `memtrace export --format speedscope` files
// validated against the JSON schema the speedscope npm package ships
// (dist/release/file-format-schema.json), with ajv. Needs node only: run
// it as `./run --no-browser speedscope_schema.test.mjs`.
//
// Files: known_allocs at the peak and with --leaks, and a Python program
// whose function name holds quotes, a backslash, control characters and
// markup (when the build made the Python extension).
//
// Prints "N passed, N failed" and exits 1 on any failure.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const SOURCE = path.resolve(process.env.MT_SOURCE || path.join(here, '..', '..'));
const BUILD = path.resolve(process.env.MT_BUILD || path.join(SOURCE, 'build'));
const MEMTRACE = path.join(BUILD, 'memtrace');
const SCHEMA = path.join(here, 'node_modules', 'speedscope', 'dist', 'release',
                         'file-format-schema.json');
const HOSTILE = 'q"\\ \t\u0001 <b>&amp; </script> ;,';

const { default: Ajv } = await import('ajv');

let passed = 0, failed = 0;
function check(name, fn) {
  try {
    fn();
    passed++;
    console.log(`ok - ${name}`);
  } catch (err) {
    failed++;
    console.log(`FAIL - ${name}\n  ${String(err && err.stack || err).split('\n').join('\n  ')}`);
  }
}
function assert(cond, msg) { if (!cond) throw new Error(msg); }
function memtrace(args) {
  return execFileSync(MEMTRACE, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
                                       maxBuffer: 1 << 28 });
}

const ajv = new Ajv({ allErrors: true, strict: false });
const validate = ajv.compile(JSON.parse(fs.readFileSync(SCHEMA, 'utf8')));
function valid(text, what) {
  const doc = JSON.parse(text);
  assert(validate(doc), `${what}: ${ajv.errorsText(validate.errors)}`);
  return doc;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mt-schema-'));
try {
  const capture = path.join(tmp, 'known.bin');
  memtrace(['run', '-q', '-o', capture, '--', path.join(BUILD, 'tests', 'progs', 'known_allocs')]);

  check('known_allocs at the peak and at the end follow the schema', () => {
    for (const args of [[], ['--leaks']]) {
      const doc = valid(memtrace(['export', capture, '--format', 'speedscope', '-o', '-', ...args]),
                        `known_allocs ${args.join(' ')}`);
      assert(doc.profiles.length === 4, 'four profiles');
      assert(doc.profiles[0].weights.includes(args.length ? 524288 : 10485760),
             `the known block in ${doc.profiles[0].name}`);
    }
  });

  check('the schema rejects a broken file (the check can fail)', () => {
    const doc = JSON.parse(memtrace(['export', capture, '--format', 'speedscope', '-o', '-']));
    doc.profiles[0].unit = 'kilobytes';
    assert(!validate(doc), 'a unit speedscope does not know is rejected');
  });

  const script = path.join(tmp, 'hostile.py');
  fs.writeFileSync(script, [
    'def f():',
    '    return bytearray(3_000_000)',
    `name = ${JSON.stringify(HOSTILE)}`,
    'code = f.__code__.replace(co_name=name)',
    'if hasattr(code, "co_qualname"):',
    '    code = code.replace(co_qualname=name)',
    'f.__code__ = code',
    'keep = f()',
    ''].join('\n'));
  const hostile = path.join(tmp, 'hostile.bin');
  let recorded = true;
  try {
    memtrace(['run', '-q', '-o', hostile, script]);
  } catch (err) {
    recorded = false;
    console.log(`# no Python run (${String(err.stderr || err).split('\n')[0]}): hostile names skipped`);
  }
  if (recorded) {
    check('a hostile function name follows the schema, intact', () => {
      const doc = valid(memtrace(['export', hostile, '--format', 'speedscope', '-o', '-']), 'hostile');
      assert(doc.shared.frames.some((f) => f.name === `${HOSTILE} (hostile.py:2)`),
             `the name: ${JSON.stringify(doc.shared.frames.map((f) => f.name))}`);
    });
  }
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
