#!/usr/bin/env node
// End-to-end test of the browser page (web/dist, built by web/build.sh) in headless Chromium:
//   1. the native CLI (`fifo generate ... -o DIR/`) writes reference PNG frames;
//   2. the page, through its test hook, generates the same frames on the wasm CPU backend;
//   3. the real UI (prompt, settings, Start, Pause/Resume, Stop, Download) generates them again;
//   4. the WebGPU backend (SwiftShader in headless Chromium) generates them again;
//   5. a browser without a WebGPU adapter still generates, and says why it uses the CPU;
// and every browser frame must match the native frames within the tolerances below. A screenshot
// of the page goes to $FIFO_ARTIFACTS (default web/dist/artifacts) with the downloaded videos.
//
//   node web/tests/e2e.mjs            (after `bash web/build.sh`; needs /usr/bin/chromium)
// Environment: CHROMIUM (browser binary), FIFO_BIN (native fifo binary; default: see nativeBinary),
// FIFO_ARTIFACTS, FIFO_E2E_GPU=0 (skip step 4), FIFO_E2E_GPU_FRAMES (default GPU_FRAMES).

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { PNG } from 'pngjs';
import { CHROMIUM_ARGS, serveStatic } from './serve.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');
const dist = resolve(process.argv.includes('--dist') ? process.argv[process.argv.indexOf('--dist') + 1] : join(repo, 'web', 'dist'));
const artifacts = resolve(process.env.FIFO_ARTIFACTS || join(dist, 'artifacts'));
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

// The settings every run uses (fast: one partition, no lookahead; guidance > 1 so that the
// conditional and unconditional passes both run).
const PROMPT = 'a red circle moving right on a black background';
const SETTINGS = { seed: 7, partitions: 1, lookahead: false, guidance: 5 };
const FRAMES = 3;
const UI_FRAMES = 4; // frames the UI run must paint before Stop
// The UI run adds a second prompt at frame 2 through the schedule rows.
const UI_SECOND_PROMPT = { frame: 2, prompt: 'a blue square moving left on a white background' };
const UI_SCHEDULE = `0: ${PROMPT}\n${UI_SECOND_PROMPT.frame}: ${UI_SECOND_PROMPT.prompt}`;
// WebGPU on SwiftShader is slow: the first frame needs 9 UNet calls (the start clip), each of
// them 15-50 s there. Measured on the 2-core machine: 1 frame with guidance 1 (batch 8) in 154 s
// (279 s while other builds ran), with guidance 5 (batch 16) in 460 s. So the GPU check is one
// frame without guidance; FIFO_E2E_GPU_FRAMES asks for more (each further frame is one call).
const GPU_SETTINGS = { ...SETTINGS, guidance: 1 };
const GPU_FRAMES = Number(process.env.FIFO_E2E_GPU_FRAMES || 1);

// Browser frames against the native CLI's, in 0-255 levels over all RGB values of all frames.
// The wasm CPU backend: measured bit-identical to the native CPU backend (max 0, mean 0) with the
// scalar build; with SIMD128 (.cargo/config.toml) one value in four frames rounded the other way
// (max 1, mean 2e-5). The margin allows a few such values.
const CPU_TOLERANCE = { max: 2, mean: 0.05 };
// The WebGPU backend on SwiftShader: measured bit-identical too (max 0, mean 0: the kernels keep
// the CPU backend's summation order closely enough that no 8-bit value rounds differently); the
// margin allows a few values to round the other way on another SwiftShader build.
const GPU_TOLERANCE = { max: 4, mean: 0.05 };

const OVERALL_TIMEOUT_MS = 15 * 60 * 1000;

const results = []; // {name, ok, detail}
const figures = {}; // measured numbers for the summary
let server = null;
const browsers = [];

function log(...args) {
  console.log('[e2e]', ...args);
}

function record(name, ok, detail = '') {
  results.push({ name, ok, detail });
  log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ': ' + detail : ''}`);
}

const hardTimeout = setTimeout(async () => {
  console.error(`\n[e2e] FAIL: the browser test did not finish within ${OVERALL_TIMEOUT_MS / 60000} minutes (hard timeout); results so far:`);
  for (const r of results) console.error(`  ${r.ok ? 'ok  ' : 'FAIL'} ${r.name}${r.detail ? ': ' + r.detail : ''}`);
  await cleanup();
  process.exit(2);
}, OVERALL_TIMEOUT_MS);

async function cleanup() {
  for (const b of browsers) await b.close().catch(() => {});
  if (server) server.close();
}

// ---------------------------------------------------------------------------------------------
// native reference frames

// The native CLI: FIFO_BIN (tools/test.sh passes the one `cargo test --workspace` built), else the
// newer of target/debug/fifo (test profile, opt-level 2) and target/release/fifo, brought up to
// date by cargo (after a workspace build this recompiles: the CLI alone resolves features
// differently); else a release build.
function nativeBinary() {
  if (process.env.FIFO_BIN) return resolve(process.env.FIFO_BIN);
  const target = process.env.CARGO_TARGET_DIR ? resolve(repo, process.env.CARGO_TARGET_DIR) : join(repo, 'target');
  const debug = join(target, 'debug', 'fifo');
  const release = join(target, 'release', 'fifo');
  const mtime = (p) => (existsSync(p) ? statSync(p).mtimeMs : -1);
  const useDebug = mtime(debug) > mtime(release);
  const profile = useDebug ? ['--profile', 'test'] : ['--release'];
  log(`native CLI: cargo build ${profile.join(' ')} --locked -p fifo-cli`);
  const r = spawnSync('cargo', ['build', ...profile, '--locked', '-p', 'fifo-cli'], { cwd: repo, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('cargo build of fifo-cli failed');
  return useDebug ? debug : release;
}

function nativeFrames(bin, frames, scheduleText = null, settings = SETTINGS, weights = 'f32') {
  const out = mkdtempSync(join(tmpdir(), 'fifo-e2e-native-'));
  let what = [PROMPT];
  if (scheduleText) {
    const file = join(out, 'schedule.txt');
    writeFileSync(file, scheduleText + '\n');
    what = ['--prompt-schedule', file];
  }
  const args = [
    'generate', ...what, '--frames', String(frames), '--seed', String(settings.seed),
    '--partitions', String(settings.partitions), '--guidance', String(settings.guidance),
    '--weights', weights, '--backend', 'cpu', '--model', join(repo, 'models', 'shapes-t2v-tiny'), '-q', '-o', out + '/',
  ];
  if (!settings.lookahead) args.push('--no-lookahead');
  const t0 = Date.now();
  log(`native: fifo ${args.map((a) => (a.includes(' ') ? JSON.stringify(a) : a)).join(' ')}`);
  const r = spawnSync(bin, args, { cwd: repo, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`the native CLI failed (${r.status}): ${r.stderr}`);
  figures.nativeSeconds = (Date.now() - t0) / 1000;
  const files = readdirSync(out).filter((f) => /^frame_\d+\.png$/.test(f)).sort();
  if (files.length !== frames) throw new Error(`the native CLI wrote ${files.length} PNG frames, expected ${frames} (in ${out})`);
  const decoded = files.map((f) => {
    const png = PNG.sync.read(readFileSync(join(out, f)));
    return { id: Number(/\d+/.exec(f)[0]), width: png.width, height: png.height, rgba: png.data };
  });
  rmSync(out, { recursive: true, force: true });
  return decoded;
}

// Compares RGB of browser frames (base64 RGBA) with native frames (RGBA from pngjs).
function compare(name, browserFrames, native, tol = CPU_TOLERANCE) {
  if (browserFrames.length < native.length) {
    record(name, false, `${browserFrames.length} frames, expected ${native.length}`);
    return null;
  }
  let max = 0;
  let sum = 0;
  let n = 0;
  const problems = [];
  for (let k = 0; k < native.length; k++) {
    const b = browserFrames[k];
    const a = native[k];
    const rgba = typeof b.rgba === 'string' ? Buffer.from(b.rgba, 'base64') : b.rgba;
    if (b.id !== a.id) problems.push(`frame ${k} has id ${b.id}, native ${a.id}`);
    if (b.width !== a.width || b.height !== a.height || rgba.length !== a.rgba.length) {
      problems.push(`frame ${k} is ${b.width}x${b.height} (${rgba.length} bytes), native ${a.width}x${a.height}`);
      continue;
    }
    for (let i = 0; i < rgba.length; i++) {
      if ((i & 3) === 3) {
        if (rgba[i] !== 255) problems.push(`frame ${k} alpha ${rgba[i]} at byte ${i}`);
        continue;
      }
      const d = Math.abs(rgba[i] - a.rgba[i]);
      if (d > max) max = d;
      sum += d;
      n++;
    }
  }
  const mean = n ? sum / n : Infinity;
  const detail = `${native.length} frames, max abs diff ${max}, mean abs diff ${mean.toFixed(4)} levels (tolerances ${tol.max} / ${tol.mean})`;
  const ok = problems.length === 0 && max <= tol.max && mean <= tol.mean;
  record(name, ok, problems.length ? `${problems.slice(0, 3).join('; ')}; ${detail}` : detail);
  return { max, mean };
}

// ---------------------------------------------------------------------------------------------
// browser helpers

async function launch(args) {
  const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args });
  browsers.push(browser);
  return browser;
}

async function openPage(browser, base, label) {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  const messages = [];
  page.on('console', (m) => messages.push(`[${label} console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => messages.push(`[${label} pageerror] ${e.message}`));
  page.on('worker', (w) => w.on('console', (m) => messages.push(`[${label} worker console.${m.type()}] ${m.text()}`)));
  page.messages = messages;
  const t0 = Date.now();
  await page.goto(base, { waitUntil: 'load' });
  const loaded = await page.evaluate(() => window.fifoPage.ready);
  figures[`${label}PageReadySeconds`] = (Date.now() - t0) / 1000;
  return { page, loaded };
}

function dumpMessages(page) {
  const m = page.messages || [];
  if (m.length) console.log(m.slice(-40).join('\n'));
}

async function waitForState(page, predicate, arg, timeoutMs, what) {
  try {
    await page.waitForFunction(predicate, arg, { timeout: timeoutMs, polling: 200 });
  } catch (e) {
    const s = await page.evaluate(() => window.fifoPage.state()).catch(() => null);
    throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}; page state: ${JSON.stringify(s)}`);
  }
}

function schedule() {
  return `0: ${PROMPT}`;
}

// ---------------------------------------------------------------------------------------------

async function main() {
  for (const [what, path] of [
    ['web/dist (run `bash web/build.sh`)', join(dist, 'index.html')],
    ['the wasm build (run `bash web/build.sh`)', join(dist, 'pkg', 'fifo_web_bg.wasm')],
    ['Chromium (apt-get install -y chromium)', chromiumPath],
  ]) {
    if (!existsSync(path)) throw new Error(`missing ${what}: ${path}`);
  }
  mkdirSync(artifacts, { recursive: true });
  figures.wasmBytes = statSync(join(dist, 'pkg', 'fifo_web_bg.wasm')).size;

  const fifoBin = nativeBinary();
  const native = nativeFrames(fifoBin, FRAMES);
  record('native reference frames', true, `${native.length} frames in ${figures.nativeSeconds.toFixed(1)} s`);
  const nativeUi = nativeFrames(fifoBin, UI_FRAMES, UI_SCHEDULE);
  const nativeInt8 = nativeFrames(fifoBin, 1, null, SETTINGS, 'int8');
  const nativeF16 = nativeFrames(fifoBin, 1, null, SETTINGS, 'f16');
  const nativeGpu = GPU_FRAMES > 0 ? nativeFrames(fifoBin, GPU_FRAMES, null, GPU_SETTINGS) : [];

  server = await serveStatic([{ prefix: '/', dir: dist }]);
  const base = `http://127.0.0.1:${server.address().port}/`;
  log(`serving ${dist} at ${base}`);

  // --- 1. the page with WebGPU enabled (SwiftShader): loads in `auto` on the CPU backend -------
  const browser = await launch(CHROMIUM_ARGS);
  log(`browser: Chromium ${browser.version()}`);
  const { page, loaded } = await openPage(browser, base, 'main');
  try {
    const s0 = await page.evaluate(() => window.fifoPage.state());
    record('page loads the model (backend auto)', loaded === true, `${s0.device} | ${s0.progress} | notices: ${JSON.stringify(s0.notices)}`);
    if (!loaded) throw new Error('the page could not load the model');
    const fallbackSaid = s0.notices.some((n) => /fallback|WebGPU/i.test(n));
    record('auto: a software WebGPU adapter is named and the CPU preferred', s0.backend === 'cpu' && fallbackSaid, `backend ${s0.backend}`);

    // --- 2. test hook on the CPU backend ------------------------------------------------------
    const cpu = await page.evaluate(
      (o) => window.fifoPage.generateFrames(o),
      { schedule: schedule(), ...SETTINGS, backend: 'cpu', weights: 'f32', frames: FRAMES },
    );
    figures.cpuFirstFrameSeconds = cpu.seconds.firstFrame;
    figures.cpuSeconds = cpu.seconds.total;
    figures.cpuFramesPerSecond = cpu.frames.length > 1 ? (cpu.frames.length - 1) / (cpu.seconds.total - cpu.seconds.firstFrame) : null;
    log(`cpu (hook): first frame ${cpu.seconds.firstFrame.toFixed(2)} s, ${FRAMES} frames ${cpu.seconds.total.toFixed(2)} s, stats ${JSON.stringify(cpu.stats)}`);
    record('cpu backend (hook) ran on the cpu', cpu.backend === 'cpu', `backend ${cpu.backend}`);
    figures.cpuDiff = compare('cpu backend frames == native frames', cpu.frames, native.slice(0, FRAMES));

    // Checkpoint after one frame, continue it in a new generate(): the same frames as one run.
    const round = await page.evaluate(
      (o) => window.fifoPage.checkpointRoundTrip(o),
      { schedule: schedule(), ...SETTINGS, backend: 'cpu', weights: 'f32', frames: FRAMES, split: 1 },
    );
    log(`checkpoint after 1 frame: ${round.checkpointBytes} bytes`);
    const cpuRef = cpu.frames.map((f) => ({ ...f, rgba: Buffer.from(f.rgba, 'base64') }));
    compare('checkpoint() + generate({checkpoint}) == one uninterrupted run, bit for bit', round.frames, cpuRef, { max: 0, mean: 0 });

    // int8 weights: the page downloads unet.int8.onnx instead of unet.onnx(+.data).
    const int8 = await page.evaluate(
      (o) => window.fifoPage.generateFrames(o),
      { schedule: schedule(), ...SETTINGS, backend: 'cpu', weights: 'int8', frames: 1 },
    );
    log(`int8: ${(int8.model.bytes / 1048576).toFixed(1)} MiB of model files: ${int8.model.files.join(', ')}`);
    compare('int8 weights: frames == native --weights int8 frames', int8.frames, nativeInt8);

    // f16 weights (the weights menu offers them; the worker once refused them).
    const f16 = await page.evaluate(
      (o) => window.fifoPage.generateFrames(o),
      { schedule: schedule(), ...SETTINGS, backend: 'cpu', weights: 'f16', frames: 1 },
    );
    record('f16 weights: the page downloads unet.f16.onnx', f16.model.files.includes('unet.f16.onnx'), f16.model.files.join(', '));
    compare('f16 weights: frames == native --weights f16 frames', f16.frames, nativeF16);

    // --- 3. the UI path -------------------------------------------------------------------------
    await page.selectOption('#backend', 'cpu');
    await page.selectOption('#weights', 'f32');
    await page.fill('#prompt', PROMPT);
    await page.fill('#seed', String(SETTINGS.seed));
    await page.fill('#partitions', String(SETTINGS.partitions));
    await page.setChecked('#lookahead', SETTINGS.lookahead);
    await page.fill('#guidance', String(SETTINGS.guidance));
    await page.fill('#frames', '');
    await page.fill('#fps', '8');
    await page.click('#add-row');
    await page.fill('#schedule-rows .schedule-row:last-child .frame', String(UI_SECOND_PROMPT.frame));
    await page.fill('#schedule-rows .schedule-row:last-child .text', UI_SECOND_PROMPT.prompt);
    const compiled = await page.locator('#schedule-text').textContent();
    record('schedule rows compile to `FRAME: prompt` lines', compiled === UI_SCHEDULE, JSON.stringify(compiled));
    // The vocabulary is shown as clickable words.
    const chips = await page.locator('#vocabulary button').allTextContents();
    record('vocabulary shown as clickable words', chips.includes('circle') && chips.includes('red'), `${chips.length} words`);
    const uiStart = Date.now();
    await page.click('#start');
    await waitForState(page, () => window.fifoPage.state().running, null, 30_000, 'the UI run to start');
    const warm = await page.evaluate(() => window.fifoPage.state().progress);
    await waitForState(page, (n) => window.fifoPage.state().painted >= n, UI_FRAMES, 300_000, `${UI_FRAMES} painted frames`);
    figures.uiFirstFrameSeconds = await page.evaluate(() => window.fifoPage.state().firstFrameSeconds);
    // Pause holds generation and painting; resume continues.
    await page.click('#pause');
    await page.waitForTimeout(300);
    const p1 = await page.evaluate(() => window.fifoPage.state());
    await page.waitForTimeout(2500);
    const p2 = await page.evaluate(() => window.fifoPage.state());
    record(
      'UI pause holds the video',
      p1.paused && p2.painted === p1.painted && p2.generated <= p1.generated + 1,
      `painted ${p1.painted} -> ${p2.painted}, generated ${p1.generated} -> ${p2.generated}`,
    );
    await page.click('#pause');
    await waitForState(page, (n) => window.fifoPage.state().painted > n, p2.painted, 120_000, 'a frame after resume');
    const progressLine = await page.evaluate(() => window.fifoPage.state().progress);
    await page.click('#stop');
    await waitForState(page, () => !window.fifoPage.state().running, null, 120_000, 'the UI run to stop');
    const sUi = await page.evaluate(() => window.fifoPage.state());
    figures.uiFramesPerSecond = sUi.rate;
    log(`UI: warm-up line "${warm}"; running line "${progressLine}"; ${sUi.generated} frames in ${((Date.now() - uiStart) / 1000).toFixed(1)} s`);
    record('UI progress line (warm-up, frames/s, backend)', /start clip/i.test(warm) && /frames\/s/.test(progressLine) && /backend/i.test(progressLine), `"${warm}" / "${progressLine}"`);
    const uiFrames = await page.evaluate((n) => window.fifoPage.recordedFrames(0, n), UI_FRAMES);
    figures.uiDiff = compare('UI run (two prompts) frames == native --prompt-schedule frames', uiFrames, nativeUi);

    // Screenshot with the last UI frame on the canvas.
    const shot = join(artifacts, 'page.png');
    await page.screenshot({ path: shot, fullPage: true });
    const box = await page.locator('#screen').boundingBox();
    checkScreenshot(shot, box);

    // Downloads: WebM and MP4 through WebCodecs, and the GIF encoder.
    for (const [format, check] of [
      ['webm', (b) => b.readUInt32BE(0) === 0x1a45dfa3],
      ['mp4', (b) => b.toString('latin1', 4, 8) === 'ftyp'],
      ['gif', (b) => b.toString('latin1', 0, 6) === 'GIF89a'],
    ]) {
      await page.selectOption('#format', format);
      const [download] = await Promise.all([page.waitForEvent('download', { timeout: 120_000 }), page.click('#download')]);
      const file = join(artifacts, `video.${format}`);
      await download.saveAs(file);
      const bytes = readFileSync(file);
      const meta = await page.evaluate(() => window.fifoPage.lastDownload);
      const wantExt = meta && meta.note ? meta.extension : format; // a documented fallback to GIF is fine
      const magicOk = wantExt === format ? check(bytes) : bytes.toString('latin1', 0, 6) === 'GIF89a';
      record(`download ${format}`, bytes.length > 500 && magicOk, `${download.suggestedFilename()} ${bytes.length} bytes, codec ${meta && meta.codec}${meta && meta.note ? ', ' + meta.note : ''}`);
    }

    // A second visit loads the model from Cache Storage.
    await page.reload({ waitUntil: 'load' });
    const again = await page.evaluate(() => window.fifoPage.ready);
    const s1 = await page.evaluate(() => window.fifoPage.state());
    const m = s1.model || {};
    // Everything but model.json (always fetched fresh, about 19 KB) must come from the cache.
    record('second visit: the model comes from Cache Storage', again === true && m.fromCache > 0 && m.bytes - m.fromCache < 100_000, `${m.fromCache} of ${m.bytes} bytes from the cache`);

    // --- 4. the WebGPU backend on SwiftShader --------------------------------------------------
    if (process.env.FIFO_E2E_GPU === '0') {
      record('gpu backend (SwiftShader)', true, 'skipped: FIFO_E2E_GPU=0');
    } else if (GPU_FRAMES < 1) {
      record('gpu backend (SwiftShader)', true, 'skipped: FIFO_E2E_GPU_FRAMES=0');
    } else {
      log(`gpu: ${GPU_FRAMES} frame(s) with guidance ${GPU_SETTINGS.guidance} on SwiftShader (about 20 s for the first frame on 2 cores; FIFO_E2E_GPU=0 skips)`);
      const t0 = Date.now();
      let gpu = null;
      try {
        gpu = await page.evaluate(
          (o) => window.fifoPage.generateFrames(o),
          { schedule: schedule(), ...GPU_SETTINGS, backend: 'gpu', weights: 'f32', frames: GPU_FRAMES, strictBackend: true },
        );
      } catch (e) {
        record('gpu backend (SwiftShader)', false, e.message);
      }
      if (gpu) {
        figures.gpuInitSeconds = gpu.seconds.init;
        figures.gpuFirstFrameSeconds = gpu.seconds.firstFrame;
        figures.gpuSeconds = gpu.seconds.total;
        figures.gpuAdapter = { ...gpu.info.adapter, name: gpu.probe.name || gpu.info.adapter.name };
        log(`gpu: adapter ${JSON.stringify(gpu.info.adapter)}, init ${gpu.seconds.init.toFixed(1)} s, first frame ${gpu.seconds.firstFrame.toFixed(1)} s, ${GPU_FRAMES} frames ${gpu.seconds.total.toFixed(1)} s (wall ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
        record('gpu backend ran on WebGPU', gpu.backend === 'gpu', `backend ${gpu.backend}, adapter ${JSON.stringify(gpu.info.adapter)}`);
        // f32 weights compute in f32 under the default precision (auto), whatever the adapter.
        record('gpu backend: f32 weights compute in f32', gpu.precision === 'f32', `precision ${gpu.precision}`);
        figures.gpuDiff = compare('gpu backend frames == native cpu frames (== wasm cpu frames)', gpu.frames, nativeGpu, GPU_TOLERANCE);
      }
    }
  } catch (e) {
    record('main browser run', false, e.message);
    dumpMessages(page);
  }

  // --- 5. no WebGPU adapter at all: the page says so and still generates on the CPU ---------------
  const bare = await launch(CHROMIUM_ARGS.filter((a) => a !== '--enable-unsafe-webgpu'));
  const { page: page2, loaded: loaded2 } = await openPage(bare, base, 'nogpu');
  try {
    const s = await page2.evaluate(() => window.fifoPage.state());
    const said = s.notices.some((n) => /WebGPU/.test(n) && /CPU/.test(n));
    record('without a WebGPU adapter: the page says so and loads the CPU backend', loaded2 === true && s.backend === 'cpu' && said, JSON.stringify(s.notices));
    const r = await page2.evaluate(
      (o) => window.fifoPage.generateFrames(o),
      { schedule: schedule(), ...SETTINGS, backend: 'gpu', weights: 'f32', frames: 1, strictBackend: false },
    );
    record('without a WebGPU adapter: backend "gpu" falls back to the CPU', r.backend === 'cpu', `backend ${r.backend}`);
    compare('without a WebGPU adapter: frames == native frames', r.frames, native.slice(0, 1));
  } catch (e) {
    record('browser without WebGPU', false, e.message);
    dumpMessages(page2);
  }

  if (results.some((r) => !r.ok)) {
    console.log('\n[e2e] browser console (main page):');
    dumpMessages(page);
  }
}

function checkScreenshot(path, box) {
  const bytes = readFileSync(path);
  const png = PNG.sync.read(bytes);
  const scale = png.width / 1200;
  const x0 = Math.max(0, Math.round(box.x * scale));
  const y0 = Math.max(0, Math.round(box.y * scale));
  const x1 = Math.min(png.width, Math.round((box.x + box.width) * scale));
  const y1 = Math.min(png.height, Math.round((box.y + box.height) * scale));
  const colours = new Set();
  let sum = 0;
  let sum2 = 0;
  let n = 0;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const i = (y * png.width + x) * 4;
      colours.add((png.data[i] << 16) | (png.data[i + 1] << 8) | png.data[i + 2]);
      const l = png.data[i] + png.data[i + 1] + png.data[i + 2];
      sum += l;
      sum2 += l * l;
      n++;
    }
  }
  const variance = n ? sum2 / n - (sum / n) ** 2 : 0;
  figures.screenshot = { bytes: bytes.length, canvasColours: colours.size, canvasVariance: Math.round(variance) };
  record(
    'screenshot saved and the canvas is not blank',
    bytes.length > 10_000 && colours.size >= 4 && variance > 10,
    `${path}: ${bytes.length} bytes, canvas ${x1 - x0}x${y1 - y0} px with ${colours.size} colours, luma variance ${variance.toFixed(0)}`,
  );
}

let failed = false;
mkdirSync(artifacts, { recursive: true });
try {
  await main();
} catch (e) {
  record('e2e', false, e.stack || e.message);
}
await cleanup();
clearTimeout(hardTimeout);
failed = results.some((r) => !r.ok);
const f = figures;
const num = (x, d = 2) => (typeof x === 'number' ? x.toFixed(d) : 'n/a');
console.log('\n== browser end-to-end summary');
for (const r of results) console.log(`  ${r.ok ? 'ok  ' : 'FAIL'} ${r.name}`);
console.log(
  `  wasm ${f.wasmBytes} bytes; CPU backend: first frame ${num(f.cpuFirstFrameSeconds)} s, ${num(f.cpuFramesPerSecond)} frames/s after it;` +
    ` UI run: first frame ${num(f.uiFirstFrameSeconds)} s, ${num(f.uiFramesPerSecond)} frames/s; native ${num(f.nativeSeconds)} s`,
);
if (f.gpuSeconds !== undefined) {
  console.log(`  GPU backend (${f.gpuAdapter ? f.gpuAdapter.name : '?'}): init ${num(f.gpuInitSeconds)} s, first frame ${num(f.gpuFirstFrameSeconds)} s, ${GPU_FRAMES} frames ${num(f.gpuSeconds)} s`);
}
for (const k of ['cpuDiff', 'uiDiff', 'gpuDiff']) {
  if (f[k]) console.log(`  ${k}: max ${f[k].max}, mean ${f[k].mean.toFixed(4)} levels`);
}
writeFileSync(join(artifacts, 'e2e-summary.json'), JSON.stringify({ ok: !failed, results, figures }, null, 1) + '\n');
console.log(failed ? '\n[e2e] FAILED' : '\n[e2e] all browser checks passed');
process.exit(failed ? 1 : 0);
