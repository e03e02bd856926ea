// The long fuzz run (`pnpm fuzz`): every *.fuzz.test.ts in packages/, plugins/ and apps/, each
// package's files through that package's own vitest, with SPIKEFLOW_FUZZ_RUNS cases per reader
// (default 10,000) and one random SPIKEFLOW_FUZZ_SEED (printed, so that a failure can be replayed).
// A watchdog ends a package's run that outlasts its limit (a reader that hangs). Prints the cases
// of each reader from the `fuzz <reader>: …` lines and a total; exits 1 on any failure.
//
//   node scripts/fuzz.mjs [--runs N] [--seed S] [--watchdog MINUTES] [--only TEXT] [--verbose]
//
// --only keeps the test files whose path contains TEXT (repeatable); --verbose streams vitest's
// output instead of showing it only for a package that failed.
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function parseArgs(argv) {
  const o = { runs: 10_000, seed: undefined, watchdogMin: 60, only: [], verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) fail(`${a} needs a value`);
      return v;
    };
    const int = (v, min) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < min) fail(`${a} must be a whole number ≥ ${min}, got '${v}'`);
      return n;
    };
    if (a === '--runs') o.runs = int(value(), 1);
    else if (a === '--seed') o.seed = int(value(), -(2 ** 31));
    else if (a === '--watchdog') o.watchdogMin = int(value(), 1);
    else if (a === '--only') o.only.push(value());
    else if (a === '--verbose') o.verbose = true;
    else if (a === '--help' || a === '-h') {
      console.log('node scripts/fuzz.mjs [--runs N (10000)] [--seed S (random)] [--watchdog MINUTES per package (60)] [--only TEXT] [--verbose]');
      process.exit(0);
    } else fail(`unknown option '${a}' (see --help)`);
  }
  return o;
}

function fail(message) {
  console.error(`fuzz: ${message}`);
  process.exit(2);
}

/** Every *.fuzz.test.ts under `dir`, node_modules and build output left out. */
function findFuzzTests(dir, out = []) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    if (e.name === 'node_modules' || e.name === 'dist' || e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) findFuzzTests(p, out);
    else if (e.isFile() && e.name.endsWith('.fuzz.test.ts')) out.push(p);
  }
  return out;
}

/** The package a file belongs to: the nearest folder above it with a package.json. */
function packageOf(file) {
  for (let d = dirname(file); d.startsWith(root) && d !== root; d = dirname(d)) if (existsSync(join(d, 'package.json'))) return d;
  return undefined;
}

const FUZZ_LINE = /fuzz (.+?): (\d+) cases, (\d+) accepted, (\d+) refused \(seed (-?\d+)\)/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: ESC (\u001b) is the character this pattern exists to strip
const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g;

/** Runs the package's fuzz files through its vitest; resolves with its exit, output, the readers' counts and the time taken. */
function runPackage(pkg, files, env, watchdogMs, verbose) {
  return new Promise((done) => {
    const started = Date.now();
    const args = ['vitest', 'run', `--testTimeout=${watchdogMs}`, ...files.map((f) => relative(pkg, f))];
    const child = spawn('npx', args, { cwd: pkg, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const readers = [];
    let pending = '';
    const take = (chunk) => {
      const text = chunk.toString();
      output += text;
      if (output.length > 4_000_000) output = output.slice(-2_000_000);
      if (verbose) process.stdout.write(text);
      pending += text;
      const lines = pending.split('\n');
      pending = lines.pop();
      for (const line of lines) {
        const m = FUZZ_LINE.exec(line.replace(ANSI, ''));
        if (m) readers.push({ reader: m[1], cases: +m[2], accepted: +m[3], refused: +m[4], seed: +m[5] });
      }
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    let timedOut = false;
    const watchdog = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid, 'SIGKILL'); // the whole group: npx, vitest and its workers
      } catch {
        child.kill('SIGKILL');
      }
    }, watchdogMs);
    child.on('close', (code, signal) => {
      clearTimeout(watchdog);
      if (pending) take('\n');
      done({ code: code ?? (signal ? 1 : 0), timedOut, output, readers, ms: Date.now() - started });
    });
  });
}

const o = parseArgs(process.argv.slice(2));
const seed = o.seed ?? randomInt(2 ** 31);
const files = ['packages', 'plugins', 'apps']
  .flatMap((d) => findFuzzTests(join(root, d)))
  .filter((f) => o.only.length === 0 || o.only.some((t) => relative(root, f).includes(t)))
  .sort();
if (files.length === 0) fail(`no *.fuzz.test.ts found${o.only.length ? ` matching ${o.only.map((t) => `'${t}'`).join(', ')}` : ''}`);
const byPackage = new Map();
for (const f of files) {
  const pkg = packageOf(f);
  if (!pkg) fail(`${relative(root, f)} is in no package`);
  byPackage.set(pkg, [...(byPackage.get(pkg) ?? []), f]);
}

const watchdogMs = o.watchdogMin * 60_000;
const env = { ...process.env, SPIKEFLOW_FUZZ_RUNS: String(o.runs), SPIKEFLOW_FUZZ_SEED: String(seed), FORCE_COLOR: '0' };
console.log(
  `fuzz: ${o.runs} cases per reader, seed ${seed} (replay: node scripts/fuzz.mjs --runs ${o.runs} --seed ${seed}); ${files.length} files in ${byPackage.size} packages; watchdog ${o.watchdogMin} min per package`,
);

const started = Date.now();
const results = [];
for (const [pkg, pkgFiles] of byPackage) {
  const name = relative(root, pkg);
  console.log(`\n${name}: ${pkgFiles.map((f) => relative(pkg, f)).join(' ')}`);
  const r = await runPackage(pkg, pkgFiles, env, watchdogMs, o.verbose);
  const ok = r.code === 0 && !r.timedOut;
  console.log(
    `${name}: ${ok ? 'passed' : r.timedOut ? `STOPPED by the watchdog after ${o.watchdogMin} min (a hang?)` : `FAILED (exit ${r.code})`} in ${(r.ms / 1000).toFixed(1)} s`,
  );
  if (!ok && !o.verbose) console.log(r.output.split('\n').slice(-80).join('\n'));
  results.push({ name, ok, ...r });
}

// One row per reader (a package's files run in parallel in its vitest: time is per package).
const rows = results.flatMap((r) => r.readers.map((x) => ({ ...x, pkg: r.name })));
const header = ['reader', 'package', 'cases', 'accepted', 'refused'];
const table = [header, ...rows.map((x) => [x.reader, x.pkg, x.cases, x.accepted, x.refused].map(String))];
const total = rows.reduce((a, x) => ({ cases: a.cases + x.cases, accepted: a.accepted + x.accepted, refused: a.refused + x.refused }), {
  cases: 0,
  accepted: 0,
  refused: 0,
});
table.push(['total', `${rows.length} readers`, total.cases, total.accepted, total.refused].map(String));
const widths = header.map((_, k) => Math.max(...table.map((row) => row[k].length)));
console.log('');
for (const [i, row] of table.entries()) {
  console.log(row.map((c, k) => (k >= 2 ? c.padStart(widths[k]) : c.padEnd(widths[k]))).join('  '));
  if (i === 0 || i === table.length - 2) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
}
console.log('');
for (const r of results) console.log(`${r.name}: ${(r.ms / 1000).toFixed(1)} s${r.ok ? '' : ' (failed)'}`);
console.log(`wall time: ${((Date.now() - started) / 1000).toFixed(1)} s`);
const failed = results.filter((r) => !r.ok);
const short = rows.filter((x) => x.cases < o.runs);
for (const x of short) console.log(`fuzz: warning: ${x.reader} ran ${x.cases} cases, not the ${o.runs} asked for (does its test pass runs itself?)`);
if (failed.length) console.log(`\nfuzz: FAILED in ${failed.map((r) => r.name).join(', ')} (seed ${seed})`);
else console.log(`\nfuzz: all ${rows.length} readers passed, seed ${seed}`);
process.exit(failed.length ? 1 : 0);
