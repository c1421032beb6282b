#!/usr/bin/env node
// The browser benchmark: our ONNX executor (web/dist/pkg/fifo_web_bg.wasm: wasm CPU backend and
// WebGPU) against onnxruntime-web (wasm EP and WebGPU EP) in the same headless Chromium and
// adapter, on the shipped UNet and on per-op graphs (web/bench/graphs/, written by
// tools/bench/make_browser_op_graphs.py). Prints one table (median ms, ratio ORT/ours: > 1 means
// we are faster, max abs difference of the outputs), the wasm size and the page's time to the
// first frame; writes everything to web/bench/results.json.
//
//   node web/bench/run.mjs [--quick] [--only REGEX] [--backend cpu|gpu] [--no-ttff] [--ort-bundle FILE]
//
//   (default: about 9 minutes on the 2-core VM: the UNet on SwiftShader takes 30-40 s a run, the
//   page's first frame about 4 minutes)
//   --quick       fewer runs per case, no UNet on the GPU (about 1 minute plus the first frame)
//   --only REGEX  only the cases whose name matches (e.g. --only 'unet|matmul')
//   --no-ttff     skip the page's time-to-first-frame measurement
//   --backend B   only the cpu (wasm) or the gpu (WebGPU) pair
//   --print       print the table of the last web/bench/results.json again (runs nothing)
//   --ort-bundle  the onnxruntime-web module: ort.min.mjs (default: `import 'onnxruntime-web'`,
//                 the JSEP WebGPU EP) or ort.webgpu.min.mjs (`onnxruntime-web/webgpu`, the native one)
//
// Needs web/dist (built by web/build.sh; run here when missing or without OnnxSession) and npm
// packages pinned in web/bench/package-lock.json (`npm ci` here when node_modules is missing).
// FIFO_BENCH_DIST=DIR measures another build of web/dist (e.g. one built with other RUSTFLAGS).
// The figures are only as quiet as the machine: the load average is printed with them.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import os from 'node:os';
import { CHROMIUM_ARGS, serveStatic } from '../tests/serve.mjs';

const BENCH = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(BENCH, '..', '..');
// FIFO_BENCH_DIST: another build of the page to measure (default web/dist).
const DIST = process.env.FIFO_BENCH_DIST ? resolve(process.env.FIFO_BENCH_DIST) : join(ROOT, 'web', 'dist');
const ORT_DIST = join(BENCH, 'node_modules', 'onnxruntime-web', 'dist');
const MODEL_DIR = join(DIST, 'models', 'shapes-t2v-tiny');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// ---------------------------------------------------------------------------------------------
// arguments

const argv = process.argv.slice(2);
const opts = { quick: false, only: null, ttff: true, ortBundle: 'ort.min.mjs', backends: ['cpu', 'gpu'] };
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--quick') opts.quick = true;
  else if (a === '--no-ttff') opts.ttff = false;
  else if (a === '--only') opts.only = new RegExp(argv[++i]);
  else if (a === '--ort-bundle') opts.ortBundle = argv[++i];
  else if (a === '--backend') opts.backends = [argv[++i]];
  else if (a === '--print') opts.print = true;
  else if (a === '-h' || a === '--help') {
    console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 20).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
    process.exit(0);
  } else {
    console.error(`unknown argument ${a} (see --help)`);
    process.exit(2);
  }
}

const started = Date.now();

/** Cores busy on the whole machine over `ms` (from /proc/stat; null where there is none). */
async function coresBusy(ms = 2000) {
  const read = () => {
    try {
      const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
      return { idle: f[3] + (f[4] || 0), total: f.reduce((a, b) => a + b, 0) };
    } catch {
      return null;
    }
  };
  const a = read();
  await new Promise((ok) => setTimeout(ok, ms));
  const b = read();
  if (!a || !b || b.total === a.total) return null;
  return (1 - (b.idle - a.idle) / (b.total - a.total)) * os.cpus().length;
}
function log(msg) {
  const t = ((Date.now() - started) / 1000).toFixed(0).padStart(4);
  console.log(`[${t} s] ${msg}`);
}

// ---------------------------------------------------------------------------------------------
// prerequisites: web/dist with OnnxSession, npm packages, graphs

function ensureDist() {
  if (process.env.FIFO_BENCH_DIST) {
    if (!existsSync(join(DIST, 'pkg', 'fifo_web.js'))) {
      console.error(`FIFO_BENCH_DIST=${DIST} has no pkg/fifo_web.js`);
      process.exit(1);
    }
    return;
  }
  const js = join(DIST, 'pkg', 'fifo_web.js');
  const why = !existsSync(js) ? `${relative(ROOT, js)} is missing`
    : !readFileSync(js, 'utf8').includes('OnnxSession') ? `${relative(ROOT, js)} has no OnnxSession (stale build)`
      : !existsSync(join(MODEL_DIR, 'model.json')) ? 'web/dist/models/shapes-t2v-tiny is missing' : null;
  if (!why) return;
  log(`${why}: running bash web/build.sh`);
  const r = spawnSync('bash', [join(ROOT, 'web', 'build.sh')], { stdio: 'inherit', cwd: ROOT });
  if (r.status !== 0) {
    console.error(`web/build.sh failed (exit ${r.status})`);
    process.exit(1);
  }
}

function ensureNodeModules() {
  const need = ['onnxruntime-web', 'playwright-core'].filter((p) => !existsSync(join(BENCH, 'node_modules', p, 'package.json')));
  if (!need.length) return;
  log(`npm ci in web/bench (missing: ${need.join(', ')})`);
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { stdio: 'inherit', cwd: BENCH });
  if (r.status !== 0) {
    console.error(`npm ci in web/bench failed (exit ${r.status})`);
    process.exit(1);
  }
}

function ensureGraphs() {
  if (existsSync(join(BENCH, 'graphs', 'graphs.json'))) return;
  log('web/bench/graphs is missing: running tools/bench/make_browser_op_graphs.py');
  const py = existsSync('/work/venv/bin/python') ? '/work/venv/bin/python' : 'python3';
  const r = spawnSync(py, [join(ROOT, 'tools', 'bench', 'make_browser_op_graphs.py')], { stdio: 'inherit', cwd: ROOT });
  if (r.status !== 0) process.exit(1);
}

// ---------------------------------------------------------------------------------------------
// static server: web/dist at /, web/bench at /bench/, onnxruntime-web's dist at /ort/

function serve() {
  return serveStatic([
    { prefix: '/ort/', dir: ORT_DIST },
    { prefix: '/bench/', dir: BENCH, deny: [join(BENCH, 'node_modules')] }, // only ORT's dist, at /ort/
    { prefix: '/', dir: DIST },
  ]);
}

// ---------------------------------------------------------------------------------------------
// cases

function unetCase(name, file, backend) {
  const model = JSON.parse(readFileSync(join(MODEL_DIR, 'model.json'), 'utf8'));
  const g = model.graphs.unet;
  const F = model.frames;
  const L = model.latent;
  const T = model.text.max_tokens;
  const D = model.text.dim;
  const data = existsSync(join(MODEL_DIR, `${file}.data`)) ? [`/models/shapes-t2v-tiny/${file}.data`] : [];
  return {
    name,
    kind: 'unet',
    backend,
    model: `/models/shapes-t2v-tiny/${file}`,
    data,
    output: g.output,
    flops: GRAPHS.unet_flops || null,
    description: `${file} B=1 F=${F} latents [1,${F},${L.channels},${L.height},${L.width}] context [1,${F},${T},${D}]`,
    inputs: [
      { name: g.latents, shape: [1, F, L.channels, L.height, L.width], kind: 'normal', seed: 1 },
      { name: g.timesteps, shape: [1, F], kind: 'timesteps', seed: 2 },
      { name: g.context, shape: [1, F, T, D], kind: 'normal', seed: 3 },
    ],
  };
}

function opCase(g, backend) {
  let seed = 100;
  return {
    name: g.name,
    kind: 'op',
    backend,
    model: `/bench/graphs/${g.file}`,
    data: [],
    output: g.output,
    flops: g.flops,
    description: g.description,
    inputs: Object.entries(g.inputs).map(([name, shape]) => ({ name, shape, kind: 'uniform', seed: seed++ })),
  };
}

// Runs per executor: warm-up, then as many rounds (ours, ORT alternating) as fit in budgetMs,
// within [minRuns, maxRuns]; a warm-up over singleRunLimitMs is the only run. timeoutS (per
// executor): the page is abandoned after it.
function settings(c) {
  const q = opts.quick;
  if (c.kind === 'unet' && c.backend === 'gpu') return { minRuns: 1, maxRuns: q ? 1 : 3, budgetMs: 45_000, singleRunLimitMs: 120_000, timeoutS: 420 };
  if (c.kind === 'unet') return { minRuns: 3, maxRuns: q ? 3 : 10, budgetMs: q ? 4_000 : 12_000, singleRunLimitMs: 120_000, timeoutS: 240 };
  if (c.backend === 'gpu') return { minRuns: q ? 2 : 3, maxRuns: q ? 3 : 10, budgetMs: q ? 2_000 : 5_000, singleRunLimitMs: 120_000, timeoutS: 180 };
  return { minRuns: 3, maxRuns: q ? 5 : 20, budgetMs: q ? 1_000 : 2_500, singleRunLimitMs: 120_000, timeoutS: 120 };
}

// ---------------------------------------------------------------------------------------------
// the browser

let GRAPHS = null;

async function main() {
  ensureDist();
  ensureNodeModules();
  ensureGraphs();
  GRAPHS = JSON.parse(readFileSync(join(BENCH, 'graphs', 'graphs.json'), 'utf8'));
  const ortVersion = JSON.parse(readFileSync(join(BENCH, 'node_modules', 'onnxruntime-web', 'package.json'), 'utf8')).version;
  const { chromium } = await import('playwright-core');

  const busyBefore = await coresBusy();
  const server = await serve();
  const base = `http://127.0.0.1:${server.address().port}`;
  log(`serving web/dist at ${base}/, web/bench at /bench/, onnxruntime-web ${ortVersion} at /ort/`);
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  log(`Chromium ${browser.version()}${opts.quick ? ' (--quick)' : ''}`);

  const results = {
    date: new Date().toISOString(),
    machine: `${os.cpus().length} CPUs (${os.cpus()[0]?.model?.trim()}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`,
    dist: relative(ROOT, DIST) || '.',
    coresBusyBefore: busyBefore,
    loadAverage: { start: os.loadavg(), end: null },
    chromium: browser.version(),
    onnxruntimeWeb: ortVersion,
    ortBundle: opts.ortBundle,
    quick: opts.quick,
    env: {},
    cases: [],
    wasm: null,
    ttff: null,
  };

  // A page that is reopened when a run overruns its timeout (GPU work cannot be cancelled).
  async function openBench(ortThreads) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    await page.goto(`${base}/bench/index.html?ortThreads=${ortThreads}&ortBundle=${encodeURIComponent(opts.ortBundle)}`);
    let env;
    try {
      env = await withTimeout(page.evaluate(() => window.bench.ready), 120, 'the bench page to load');
    } catch (e) {
      throw new Error(`${e.message}; page errors: ${errors.join(' | ')}`);
    }
    return { context, page, env, errors };
  }

  async function runCase(bench, c, impls, ortThreads) {
    const s = settings(c);
    try {
      const r = await withTimeout(bench.page.evaluate((spec) => window.bench.run(spec), { ...c, ...s, impls }), s.timeoutS * impls.length, `${c.name} (${c.backend})`);
      return [bench, r];
    } catch (e) {
      log(`  ${c.name}: ${e.message}; reopening the page`);
      await bench.context.close().catch(() => {});
      return [await openBench(ortThreads), Object.fromEntries(impls.map((i) => [i, { error: e.message }]))];
    }
  }

  const cpuCases = [unetCase('unet', 'unet.onnx', 'cpu'), unetCase('unet.int8', 'unet.int8.onnx', 'cpu'),
    ...GRAPHS.graphs.map((g) => opCase(g, 'cpu'))];
  const gpuCases = [...GRAPHS.graphs.map((g) => opCase(g, 'gpu'))];
  if (!opts.quick) gpuCases.push(unetCase('unet', 'unet.onnx', 'gpu'));
  const keep = (c) => opts.backends.includes(c.backend) && (!opts.only || opts.only.test(c.name));

  // 1. ORT with 2 threads (COOP/COEP): every case, ours then ORT.
  let bench = await openBench(2);
  results.env = bench.env;
  log(`page: crossOriginIsolated ${bench.env.crossOriginIsolated}, ${bench.env.hardwareConcurrency} hardware threads, ` +
    `ORT ${bench.env.ortVersion} (${bench.env.ortBundle}, ${bench.env.ortThreads} threads), adapter ${JSON.stringify({ ...bench.env.adapter, features: (bench.env.adapter.features || []).length })}`);
  for (const c of [...cpuCases, ...gpuCases].filter(keep)) {
    log(`${c.backend} ${c.name}: ${c.description}`);
    const row = { name: c.name, backend: c.backend, kind: c.kind, description: c.description, flops: c.flops };
    let r2;
    [bench, r2] = await runCase(bench, c, ['ours', 'ort'], 2);
    Object.assign(row, r2);
    for (const impl of ['ours', 'ort']) {
      const r = row[impl];
      log(r.error ? `  ${impl}: ERROR ${r.error}` : `  ${impl}: ${fmtMs(r.ms)} ms median of ${r.n}${r.cold ? ' (cold single run)' : ''}, first ${fmtMs(r.firstMs)} ms, build ${fmtMs(r.buildMs)} ms`);
    }
    row.diff = await bench.page.evaluate(([n, b]) => window.bench.compare(n, b), [c.name, c.backend]).catch((e) => ({ error: String(e) }));
    if (row.diff) {
      let s = `  max |ours - ORT| ${fmtDiff(row.diff)}`;
      if (c.backend !== 'cpu') s += `; against ORT wasm's output: ours ${fmtDiff(row.diff.oursVsCpu)}, ORT ${fmtDiff(row.diff.ortVsCpu)}`;
      log(s);
    }
    results.cases.push(row);
  }
  await bench.context.close();

  // 2. ORT wasm with 1 thread on the CPU cases (our wasm CPU backend runs one thread).
  const single = cpuCases.filter(keep);
  if (single.length) {
    bench = await openBench(1);
    log(`ORT wasm with 1 thread (crossOriginIsolated ${bench.env.crossOriginIsolated})`);
    for (const c of single) {
      let r;
      [bench, { ort: r }] = await runCase(bench, c, ['ort'], 1);
      await bench.page.evaluate((n) => window.bench.compare(n, 'cpu', false), c.name).catch(() => null);
      log(`  ${c.name}: ${r.error ? `ERROR ${r.error}` : `${fmtMs(r.ms)} ms median of ${r.n}`}`);
      const row = results.cases.find((x) => x.name === c.name && x.backend === 'cpu');
      if (row) row.ort1 = r;
    }
    await bench.context.close();
  }

  // 3. wasm size.
  const wasmFile = join(DIST, 'pkg', 'fifo_web_bg.wasm');
  const wasmBytes = readFileSync(wasmFile);
  const ortWasm = join(ORT_DIST, opts.ortBundle.includes('webgpu') ? 'ort-wasm-simd-threaded.asyncify.wasm' : 'ort-wasm-simd-threaded.jsep.wasm');
  const ortBytes = readFileSync(ortWasm);
  results.wasm = {
    file: relative(ROOT, wasmFile), raw: wasmBytes.length, gzip: gzipSync(wasmBytes, { level: 9 }).length,
    js: statSync(join(DIST, 'pkg', 'fifo_web.js')).size,
    ort: { file: relative(ROOT, ortWasm), raw: ortBytes.length, gzip: gzipSync(ortBytes, { level: 9 }).length },
  };

  // 4. Time to the first frame on the page itself (web/dist/index.html, fresh profile, CPU backend).
  if (opts.ttff) {
    try {
      results.ttff = await timeToFirstFrame(browser, base);
    } catch (e) {
      results.ttff = { error: e.message };
    }
    log(`time to first frame: ${JSON.stringify(results.ttff)}`);
  }

  await browser.close();
  server.close();
  results.loadAverage.end = os.loadavg();
  results.seconds = (Date.now() - started) / 1000;
  writeFileSync(join(BENCH, 'results.json'), JSON.stringify(results, null, 1) + '\n');
  printReport(results);
}

async function timeToFirstFrame(browser, base) {
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    const t0 = Date.now();
    await page.goto(`${base}/index.html`);
    const hasHook = await page.evaluate(() => !!(window.fifoPage && window.fifoPage.ready && window.fifoPage.generateFrames));
    if (!hasHook) return { skipped: 'the page exposes no window.fifoPage.generateFrames' };
    const loaded = await withTimeout(page.evaluate(() => window.fifoPage.ready), 300, 'the page to load the model');
    const readyS = (Date.now() - t0) / 1000;
    if (loaded !== true) return { error: 'the page could not load the model', readyS };
    const s0 = await page.evaluate(() => window.fifoPage.state());
    const prompt = 'a red circle moving right on a black background';
    const r = await withTimeout(page.evaluate((o) => window.fifoPage.generateFrames(o),
      { schedule: `0: ${prompt}`, backend: s0.backend || 'cpu', weights: 'f32', frames: 1 }), 300, 'the first frame');
    const total = readyS + r.seconds.init + r.seconds.firstFrame;
    return {
      backend: r.backend,
      settings: 'the model defaults (partitions, lookahead, guidance), f32 weights',
      pageReadyS: readyS,
      initS: r.seconds.init,
      firstFrameS: r.seconds.firstFrame,
      totalS: total,
      stats: r.stats,
    };
  } finally {
    await context.close();
  }
}

// ---------------------------------------------------------------------------------------------
// report

function withTimeout(promise, seconds, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, fail) => { timer = setTimeout(() => fail(new Error(`timed out after ${seconds} s waiting for ${what}`)), seconds * 1000); }),
  ]).finally(() => clearTimeout(timer));
}

function fmtMs(ms) {
  if (ms == null || Number.isNaN(ms)) return '-';
  return ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2);
}

function fmtDiff(d) {
  if (!d || (d.maxAbs === undefined && !d.error)) return '-';
  if (d.error) return 'SHAPE';
  if (d.maxAbs == null) return `NONFINITE(${d.nonFinite})`;
  return `${d.maxAbs.toExponential(1)}`;
}

function runs(r) {
  if (!r || r.error) return '-';
  return r.cold ? '1c' : String(r.n);
}

function ratio(ort, ours) {
  if (!ort || !ours || ort.error || ours.error) return null;
  return ort.ms / ours.ms;
}

function pad(s, n, right = false) {
  s = String(s);
  return right ? s.padEnd(n) : s.padStart(n);
}

function printReport(res) {
  const out = [];
  const env = res.env || {};
  const adapter = env.adapter || {};
  const adapterName = adapter.error ? `none (${adapter.error})`
    : [adapter.vendor, adapter.architecture, adapter.description].filter(Boolean).join(' ') + (adapter.isFallbackAdapter ? ' (fallback adapter)' : '');
  out.push('');
  out.push(`Browser benchmark: our executor vs onnxruntime-web ${res.onnxruntimeWeb} (${res.ortBundle}) — ${res.date.slice(0, 10)}`);
  out.push(`Chromium ${res.chromium} headless, ${res.machine}; crossOriginIsolated ${env.crossOriginIsolated}; WebGPU adapter: ${adapterName}`);
  // The start value is the machine before the benchmark; the benchmark itself keeps up to about
  // 2 cores busy (ORT's 2 threads), so the end value includes it.
  const [s1, s5] = res.loadAverage.start;
  const before = res.coresBusyBefore;
  const busy = before != null ? before > 0.3 : s1 > 1;
  out.push(`machine before the run: ${before != null ? `${before.toFixed(2)} cores busy (2 s sample), ` : ''}load average ${s1.toFixed(2)} (1 min), ` +
    `${s5.toFixed(2)} (5 min); at the end ${res.loadAverage.end[0].toFixed(2)} (includes this run)` +
    `${busy ? ': the machine was BUSY, the figures are noisy' : ''}; page ${res.dist}`);
  out.push('ms = median of N runs after 1 warm-up, ours and ORT alternating (N: runs; "1c": the warm-up was over the limit, the only run);');
  out.push('ratio = ORT ms / ours ms (> 1: we are faster); max diff = max |ours - ORT| over the output (|ref|: max |ORT|);');
  out.push('GPU: ours-cpu / ORT-cpu = max diff of each against ORT wasm\'s output of the same case; build = session creation.');
  const pairs = [
    ['cpu', 'ours wasm CPU backend (1 thread) vs ORT wasm EP (2 threads; "ORT 1t": 1 thread)'],
    ['gpu', `ours WebGPU vs ORT WebGPU EP, on ${adapterName}`],
  ];
  const summary = [];
  for (const [backend, title] of pairs) {
    const rows = res.cases.filter((c) => c.backend === backend);
    if (!rows.length) continue;
    out.push('');
    out.push(`== ${backend}: ${title}`);
    const head = [pad('case', 10, true), pad('ours ms', 9), pad('ORT ms', 9), pad('ratio', 6)];
    if (backend === 'cpu') head.push(pad('ORT 1t', 9), pad('ratio1t', 7));
    head.push(pad('N', 7), pad('ours GF/s', 9), pad('build ours/ORT ms', 17), pad('max diff', 9), pad('|ref|', 7));
    if (backend !== 'cpu') head.push(pad('ours-cpu', 9), pad('ORT-cpu', 9));
    out.push(head.join(' '));
    const ratios = [];
    const ratios1 = [];
    for (const c of rows) {
      const r = ratio(c.ort, c.ours);
      const r1 = ratio(c.ort1, c.ours);
      if (r) ratios.push(r);
      if (r1) ratios1.push(r1);
      const gf = c.flops && c.ours && !c.ours.error ? (c.flops / c.ours.ms / 1e6).toFixed(c.flops / c.ours.ms / 1e6 >= 10 ? 1 : 2) : '-';
      const line = [pad(c.name, 10, true), pad(c.ours?.error ? 'ERROR' : fmtMs(c.ours?.ms), 9), pad(c.ort?.error ? 'ERROR' : fmtMs(c.ort?.ms), 9), pad(r ? r.toFixed(2) : '-', 6)];
      if (backend === 'cpu') line.push(pad(c.ort1?.error ? 'ERROR' : fmtMs(c.ort1?.ms), 9), pad(r1 ? r1.toFixed(2) : '-', 7));
      line.push(pad(`${runs(c.ours)}/${runs(c.ort)}`, 7), pad(gf, 9),
        pad(`${fmtMs(c.ours?.buildMs)}/${fmtMs(c.ort?.buildMs)}`, 17), pad(fmtDiff(c.diff), 9),
        pad(c.diff && c.diff.refMaxAbs != null ? c.diff.refMaxAbs.toFixed(2) : '-', 7));
      if (backend !== 'cpu') line.push(pad(fmtDiff(c.diff?.oursVsCpu), 9), pad(fmtDiff(c.diff?.ortVsCpu), 9));
      out.push(line.join(' '));
    }
    const errors = rows.flatMap((c) => ['ours', 'ort', 'ort1'].filter((k) => c[k]?.error).map((k) => `  ${c.name} ${k === 'ours' ? 'ours' : k === 'ort' ? 'ORT' : 'ORT 1 thread'}: ${c[k].error}`));
    if (errors.length) out.push('errors:', ...errors.map((e) => (e.length > 400 ? e.slice(0, 400) + '...' : e)));
    const gm = (xs) => Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length);
    if (ratios.length) {
      let s = `${backend}: geometric mean ratio ${gm(ratios).toFixed(2)} over ${ratios.length} cases (ORT ${backend === 'cpu' ? '2 threads' : 'WebGPU'})`;
      if (ratios1.length) s += `, ${gm(ratios1).toFixed(2)} vs ORT 1 thread`;
      summary.push(s);
    }
  }
  out.push('');
  out.push(...summary);
  const w = res.wasm;
  if (w) {
    out.push('');
    out.push(`wasm: ${w.file} ${(w.raw / 1e6).toFixed(2)} MB raw, ${(w.gzip / 1e6).toFixed(2)} MB gzipped (goal < 3 MB gzipped: ${w.gzip < 3e6 ? 'met' : 'NOT met'}); ` +
      `fifo_web.js ${(w.js / 1e3).toFixed(0)} kB`);
    out.push(`      for scale: onnxruntime-web's ${w.ort.file.split('/').pop()} ${(w.ort.raw / 1e6).toFixed(2)} MB raw, ${(w.ort.gzip / 1e6).toFixed(2)} MB gzipped`);
  }
  const t = res.ttff;
  if (t) {
    if (t.skipped) out.push(`time to first frame: skipped (${t.skipped})`);
    else if (t.error) out.push(`time to first frame: ERROR ${t.error}`);
    else {
      out.push(`time to first frame (web/dist/index.html, fresh profile, ${t.backend} backend, model defaults, f32): ${t.totalS.toFixed(1)} s` +
        ` = page + model download and load ${t.pageReadyS.toFixed(1)} s + init ${t.initS.toFixed(1)} s + sampling to the first frame ${t.firstFrameS.toFixed(1)} s`);
    }
  }
  out.push(`results: ${relative(process.cwd(), join(BENCH, 'results.json'))}; total ${res.seconds.toFixed(0)} s`);
  console.log(out.join('\n'));
}

if (opts.print) {
  const file = join(BENCH, 'results.json');
  if (!existsSync(file)) {
    console.error('no web/bench/results.json yet: run node web/bench/run.mjs first');
    process.exit(1);
  }
  printReport(JSON.parse(readFileSync(file, 'utf8')));
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
