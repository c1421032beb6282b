// The page: controls, canvas playback at the chosen fps, progress line, downloads.
// All model work happens in the worker behind fifo.js.

import { FifoGenerator } from './fifo.js';

const $ = (id) => document.getElementById(id);
const ui = {
  screen: $('screen'),
  progress: $('progress'),
  device: $('device'),
  notices: $('notices'),
  start: $('start'),
  pause: $('pause'),
  stop: $('stop'),
  format: $('format'),
  download: $('download'),
  downloadStatus: $('download-status'),
  saveCheckpoint: $('save-checkpoint'),
  loadCheckpoint: $('load-checkpoint'),
  prompt: $('prompt'),
  completions: $('prompt-completions'),
  promptCheck: $('prompt-check'),
  vocabulary: $('vocabulary'),
  grammar: $('grammar'),
  rows: $('schedule-rows'),
  addRow: $('add-row'),
  scheduleText: $('schedule-text'),
  seed: $('seed'),
  partitions: $('partitions'),
  lookahead: $('lookahead'),
  guidance: $('guidance'),
  frames: $('frames'),
  fps: $('fps'),
  weights: $('weights'),
  precision: $('precision'),
  backend: $('backend'),
  modelLine: $('model-line'),
  speedHint: $('speed-hint'),
};

const MAX_RECORDED_FRAMES = 7200; // about 115 MB of 64x64 RGBA; older frames are dropped from downloads
const MAX_AHEAD = 16; // frames the worker may run ahead of the canvas

const fifo = new FifoGenerator();
const state = {
  ready: null, // init() result
  loadedKey: null, // `${backend}|${weights}|${precision}` of the loaded model
  deviceLine: '', // the loaded model's device line, before the UNet's precision is known
  loading: null, // the running init promise
  vocabulary: [],
  running: false, // a generation is active (maybe paused)
  paused: false,
  generated: 0,
  painted: 0,
  recorded: [], // frames kept for downloads
  droppedFromRecording: 0,
  paintQueue: [], // {frame, resolve}
  nextPaintAt: 0,
  genStartedAt: 0,
  firstFrameAt: 0,
  lastFrameTimes: [],
  phase: '',
  phaseMessage: '',
  lastStats: null,
  hookBusy: false,
};

const ctx = ui.screen.getContext('2d');
const frameCanvas = document.createElement('canvas');
const frameCtx = frameCanvas.getContext('2d');

// ---------------------------------------------------------------------------------------------
// notices and errors: the page always says what is going on

function addNotice(level, message, { replaceKey } = {}) {
  if (replaceKey) {
    const old = ui.notices.querySelector(`[data-key="${replaceKey}"]`);
    if (old) old.remove();
  }
  const p = document.createElement('p');
  p.className = `notice ${level}`;
  p.textContent = message;
  if (replaceKey) p.dataset.key = replaceKey;
  ui.notices.appendChild(p);
  while (ui.notices.children.length > 6) ui.notices.firstElementChild.remove();
  return p;
}

function clearNotices() {
  ui.notices.textContent = '';
}

window.addEventListener('error', (e) => addNotice('error', `Page error: ${e.message}`));
window.addEventListener('unhandledrejection', (e) => addNotice('error', `Page error: ${e.reason && e.reason.message ? e.reason.message : e.reason}`));

function setProgress(text) {
  ui.progress.textContent = text;
}

// ---------------------------------------------------------------------------------------------
// model loading

function selectedKey() {
  return `${ui.backend.value}|${ui.weights.value}|${ui.precision.value}`;
}

async function ensureLoaded() {
  const key = selectedKey();
  if (state.loadedKey === key && state.ready) return state.ready;
  if (state.loading) {
    await state.loading.catch(() => {});
    if (state.loadedKey === key && state.ready) return state.ready;
  }
  const [backend, weights, precision] = key.split('|');
  state.loading = (async () => {
    updateButtons();
    clearNotices();
    const t0 = performance.now();
    const ready = await fifo.init({
      backend,
      weights,
      precision,
      onProgress: onLoadProgress,
      onNotice: (n) => addNotice(n.level, n.message),
    });
    state.ready = ready;
    state.loadedKey = key;
    showModel(ready, (performance.now() - t0) / 1000);
    return ready;
  })();
  try {
    return await state.loading;
  } catch (e) {
    state.ready = null;
    state.loadedKey = null;
    setProgress('The model could not be loaded.');
    addNotice('error', e.message);
    throw e;
  } finally {
    state.loading = null;
    updateButtons();
  }
}

function onLoadProgress(p) {
  switch (p.phase) {
    case 'fetch':
      setProgress(`Downloading the model: ${p.message}`);
      break;
    case 'wasm':
      setProgress('Loading the WebAssembly module…');
      break;
    case 'probe':
      setProgress('Looking for a WebGPU adapter…');
      break;
    case 'load':
      setProgress(`Preparing the model: ${p.message}…`);
      break;
    case 'ready':
      setProgress('Ready.');
      break;
  }
}

function showModel(ready, seconds) {
  const info = ready.info;
  const probe = ready.probe;
  state.vocabulary = (info.vocabulary || []).filter((w) => !/^<.*>$/.test(w));
  let device;
  if (ready.backend === 'gpu') {
    const a = { ...(info.adapter || {}), name: probe.name || (info.adapter && info.adapter.name) };
    device = `Device: ${a.name || 'WebGPU adapter'}${a.fallback ? ' (software fallback adapter)' : ''} · backend: WebGPU`;
  } else {
    const gpu = probe.available
      ? `WebGPU adapter ${probe.name || '(unnamed)'}${probe.fallback ? ' (software fallback)' : ''} not used`
      : 'no WebGPU';
    device = `Device: this CPU (WebAssembly, one thread) · backend: CPU · ${gpu}`;
  }
  ui.device.textContent = device;
  state.deviceLine = device;
  const mb = (ready.model.bytes / 1048576).toFixed(1);
  const cached = ready.model.fromCache > 0 ? `, ${(ready.model.fromCache / 1048576).toFixed(1)} MiB from the browser cache` : '';
  ui.modelLine.textContent =
    `Model ${info.name}: ${info.width}x${info.height} frames, window of ${info.frames}` +
    (info.frames_per_latent > 1 ? ` latent frames (${info.frames_per_latent} video frames each)` : '') +
    `, ${info.fps} fps; ` +
    `${ready.weights} weights, ${mb} MiB${cached}; ready in ${seconds.toFixed(1)} s.`;
  if (!state.defaultsApplied) {
    const d = info.defaults || {};
    if (d.partitions) ui.partitions.value = d.partitions;
    if (d.lookahead !== undefined) ui.lookahead.checked = !!d.lookahead;
    if (d.guidance !== undefined) ui.guidance.value = d.guidance;
    if (info.fps) ui.fps.value = info.fps;
    state.defaultsApplied = true;
  }
  ui.speedHint.textContent =
    ready.backend === 'cpu'
      ? 'On the CPU backend, 1 partition without lookahead makes frames about 10 times faster than 4 partitions with lookahead and shows the first one about 30 times sooner; guidance 1 halves the work again (at some cost in quality).'
      : '';
  showVocabulary(info);
  checkPrompts();
  if (!state.running) setProgress('Ready. Press Start.');
}

// ---------------------------------------------------------------------------------------------
// vocabulary, completion, prompt checks, schedule rows

const GROUPS = [
  ['colours', ['red', 'green', 'blue', 'yellow', 'cyan', 'magenta', 'white', 'orange', 'black', 'gray', 'grey', 'navy', 'brown', 'purple', 'pink']],
  ['shapes', ['circle', 'square', 'triangle', 'star', 'ring', 'cross']],
  ['directions', ['left', 'right', 'up', 'down']],
];

let lastPromptInput = ui.prompt;

function showVocabulary(info) {
  ui.vocabulary.textContent = '';
  const words = state.vocabulary;
  const used = new Set();
  const addGroup = (label, list) => {
    if (!list.length) return;
    const g = document.createElement('span');
    g.className = 'group';
    g.textContent = label;
    ui.vocabulary.appendChild(g);
    for (const w of list) {
      used.add(w);
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = w;
      b.title = `add "${w}" to the prompt`;
      b.addEventListener('click', () => insertWord(w));
      ui.vocabulary.appendChild(b);
    }
  };
  for (const [label, members] of GROUPS) addGroup(label, words.filter((w) => members.includes(w)));
  addGroup('other words', words.filter((w) => !used.has(w)));
  ui.grammar.textContent = info.grammar ? `Prompts look like: ${info.grammar}` : '';
  updateCompletions(ui.prompt);
}

function insertWord(word) {
  const input = lastPromptInput && document.body.contains(lastPromptInput) ? lastPromptInput : ui.prompt;
  const v = input.value;
  input.value = v && !/\s$/.test(v) ? `${v} ${word}` : `${v}${word}`;
  input.focus();
  input.dispatchEvent(new Event('input'));
}

// <datalist> completes whole values: offer "text so far + each matching word".
function updateCompletions(input) {
  const v = input.value;
  const cut = v.lastIndexOf(' ') + 1;
  const head = v.slice(0, cut);
  const partial = v.slice(cut).toLowerCase();
  ui.completions.textContent = '';
  for (const w of state.vocabulary) {
    if (!w.startsWith(partial)) continue;
    const o = document.createElement('option');
    o.value = head + w;
    ui.completions.appendChild(o);
  }
}

function unknownWords(text) {
  if (!state.vocabulary.length) return [];
  const known = new Set(state.vocabulary);
  return text
    .toLowerCase()
    .split(/\s+/)
    .filter((w) => w && !known.has(w));
}

function checkPrompts() {
  let message = '';
  for (const input of [ui.prompt, ...ui.rows.querySelectorAll('input.text')]) {
    const bad = unknownWords(input.value);
    input.classList.toggle('invalid', bad.length > 0);
    if (bad.length && !message) message = `Not in the model's vocabulary: ${bad.map((w) => `"${w}"`).join(', ')}. Click the words below.`;
  }
  if (!ui.prompt.value.trim()) message = message || 'Write a prompt (click the words below).';
  ui.promptCheck.textContent = message;
  ui.promptCheck.classList.toggle('bad', !!message);
  ui.scheduleText.textContent = scheduleText();
}

function addScheduleRow(frame = '', text = '') {
  const row = document.createElement('div');
  row.className = 'schedule-row';
  const f = document.createElement('input');
  f.className = 'frame';
  f.placeholder = 'frame';
  f.title = 'frame k, or k..m to blend from the previous prompt over frames k to m';
  f.value = frame;
  const t = document.createElement('input');
  t.className = 'text';
  t.placeholder = 'prompt';
  t.spellcheck = false;
  t.setAttribute('list', 'prompt-completions');
  t.value = text;
  const x = document.createElement('button');
  x.type = 'button';
  x.textContent = '×';
  x.title = 'remove this prompt';
  x.addEventListener('click', () => {
    row.remove();
    checkPrompts();
  });
  for (const el of [f, t]) el.addEventListener('input', checkPrompts);
  t.addEventListener('focus', () => {
    lastPromptInput = t;
    updateCompletions(t);
  });
  t.addEventListener('input', () => updateCompletions(t));
  row.append(f, t, x);
  ui.rows.appendChild(row);
  checkPrompts();
  return row;
}

/** Rows of [frame, prompt] compiled to `FRAME: prompt` lines (the main prompt at frame 0). */
function scheduleText() {
  const lines = [{ start: 0, line: `0: ${ui.prompt.value.trim().replace(/\s+/g, ' ')}` }];
  for (const row of ui.rows.querySelectorAll('.schedule-row')) {
    const frame = row.querySelector('.frame').value.trim().replace(/\s+/g, '');
    const text = row.querySelector('.text').value.trim().replace(/\s+/g, ' ');
    if (!frame && !text) continue;
    const m = /^(\d+)(?:\.\.(\d+))?$/.exec(frame);
    const start = m ? Number(m[1]) : Number.MAX_SAFE_INTEGER;
    lines.push({ start, line: `${frame}: ${text}` });
  }
  lines.sort((a, b) => a.start - b.start);
  return lines.map((l) => l.line).join('\n');
}

ui.prompt.addEventListener('input', () => {
  updateCompletions(ui.prompt);
  checkPrompts();
});
ui.prompt.addEventListener('focus', () => {
  lastPromptInput = ui.prompt;
  updateCompletions(ui.prompt);
});
ui.addRow.addEventListener('click', () => {
  const rows = ui.rows.querySelectorAll('.schedule-row');
  const lastFrame = rows.length ? Number.parseInt(rows[rows.length - 1].querySelector('.frame').value, 10) || 0 : 0;
  const row = addScheduleRow(String(lastFrame + 24), '');
  row.querySelector('.text').focus();
});

// ---------------------------------------------------------------------------------------------
// playback: frames queue up and are painted at the chosen fps on requestAnimationFrame

function paintFrame(frame) {
  if (frameCanvas.width !== frame.width || frameCanvas.height !== frame.height) {
    frameCanvas.width = frame.width;
    frameCanvas.height = frame.height;
  }
  frameCtx.putImageData(new ImageData(frame.rgba, frame.width, frame.height), 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(frameCanvas, 0, 0, ui.screen.width, ui.screen.height);
}

function playbackTick(now) {
  requestAnimationFrame(playbackTick);
  if (state.paused || !state.paintQueue.length) return;
  const interval = 1000 / Math.max(1, Number(ui.fps.value) || 8);
  if (now < state.nextPaintAt) return;
  const { frame, resolve } = state.paintQueue.shift();
  paintFrame(frame);
  state.painted++;
  // Keep the cadence; after a stall (queue was empty) restart it from now.
  state.nextPaintAt = now - state.nextPaintAt > interval ? now + interval : state.nextPaintAt + interval;
  resolve();
  updateProgressLine();
}
requestAnimationFrame(playbackTick);

// Hidden tabs get no animation frames: do not hold the worker back then.
document.addEventListener('visibilitychange', () => {
  if (document.hidden) drainPaintQueue(true);
});

function drainPaintQueue(paintLast) {
  const q = state.paintQueue.splice(0);
  if (paintLast && q.length) {
    paintFrame(q[q.length - 1].frame);
    state.painted += q.length;
  }
  for (const item of q) item.resolve();
}

function onFrame(frame) {
  const now = performance.now();
  state.generated++;
  if (!state.firstFrameAt && fifo.precision) {
    // Known once the UNet is built: never trade accuracy without saying so.
    ui.device.textContent = `${state.deviceLine} · UNet arithmetic: ${fifo.precision}`;
  }
  if (!state.firstFrameAt) {
    state.firstFrameAt = now;
    state.nextPaintAt = now;
  }
  state.lastFrameTimes.push(now);
  if (state.lastFrameTimes.length > 20) state.lastFrameTimes.shift();
  state.recorded.push({ id: frame.id, width: frame.width, height: frame.height, rgba: frame.rgba });
  if (state.recorded.length > MAX_RECORDED_FRAMES) {
    state.recorded.shift();
    state.droppedFromRecording++;
  }
  updateProgressLine();
  return new Promise((resolve) => {
    if (document.hidden) {
      paintFrame(frame);
      state.painted++;
      resolve();
    } else state.paintQueue.push({ frame, resolve });
  });
}

function generationRate() {
  const t = state.lastFrameTimes;
  if (t.length < 2) return null;
  return (t.length - 1) / ((t[t.length - 1] - t[0]) / 1000);
}

function updateProgressLine() {
  if (!state.running && !state.generated) return;
  const parts = [];
  let backend = 'backend ?';
  if (state.ready && state.ready.backend === 'gpu') {
    const a = { ...(state.ready.info.adapter || {}), name: state.ready.probe.name || (state.ready.info.adapter || {}).name };
    backend = `WebGPU backend on ${a.name || 'the WebGPU adapter'}${a.fallback ? ' (software)' : ''}`;
  } else if (state.ready) backend = 'CPU backend (WebAssembly)';
  if (state.running && !state.generated) {
    const s = ((performance.now() - state.genStartedAt) / 1000).toFixed(0);
    parts.push(`Sampling the start clip (queue warm-up)… ${s} s`);
  } else {
    parts.push(`${state.painted} frames shown, ${state.generated} generated`);
    const rate = generationRate();
    if (rate) parts.push(`${rate.toFixed(2)} frames/s`);
    if (state.firstFrameAt) parts.push(`first frame after ${((state.firstFrameAt - state.genStartedAt) / 1000).toFixed(1)} s`);
    if (state.paused) parts.push('paused');
    else if (!state.running) parts.push('stopped');
  }
  parts.push(backend);
  setProgress(parts.join(' · '));
}
setInterval(() => {
  if (state.running && !state.generated) updateProgressLine();
}, 1000);

// ---------------------------------------------------------------------------------------------
// controls

function settings() {
  const num = (el) => (el.value.trim() === '' ? undefined : Number(el.value));
  const frames = num(ui.frames);
  return {
    schedule: scheduleText(),
    seed: num(ui.seed) ?? 0,
    partitions: num(ui.partitions),
    lookahead: ui.lookahead.checked,
    guidance: num(ui.guidance),
    frames: frames === undefined ? Infinity : frames,
  };
}

function updateButtons() {
  const busy = !!state.loading || state.hookBusy;
  ui.start.disabled = busy || state.running;
  ui.pause.disabled = !state.running;
  ui.pause.textContent = state.paused ? 'Resume' : 'Pause';
  ui.stop.disabled = !state.running;
  ui.download.disabled = !state.recorded.length;
  ui.saveCheckpoint.disabled = !state.ready || busy || !state.generated;
  ui.loadCheckpoint.disabled = busy || state.running;
  ui.loadCheckpoint.parentElement.classList.toggle('disabled', busy || state.running);
  for (const el of [ui.backend, ui.weights, ui.precision]) el.disabled = state.running || state.hookBusy;
}

async function startGeneration(extra = {}) {
  state.running = true;
  state.paused = false;
  updateButtons();
  try {
    await ensureLoaded();
  } catch {
    state.running = false;
    updateButtons();
    return;
  }
  state.generated = 0;
  state.painted = 0;
  state.recorded = [];
  state.droppedFromRecording = 0;
  drainPaintQueue(false);
  state.firstFrameAt = 0;
  state.lastFrameTimes = [];
  state.genStartedAt = performance.now();
  ui.downloadStatus.textContent = '';
  updateProgressLine();
  const s = { ...settings(), ...extra, maxAhead: MAX_AHEAD };
  try {
    const result = await fifo.generate(s, onFrame);
    state.lastStats = result.stats;
  } catch (e) {
    addNotice('error', e.message);
    if (!fifo.ready) {
      // The wasm module crashed: the next Start loads the model again in a fresh worker.
      state.ready = null;
      state.loadedKey = null;
    }
  } finally {
    state.running = false;
    state.paused = false;
    updateButtons();
    updateProgressLine();
    if (!state.generated) setProgress('Stopped before the first frame.');
  }
}

ui.start.addEventListener('click', () => {
  const bad = unknownWords(ui.prompt.value);
  if (!ui.prompt.value.trim()) {
    addNotice('warn', 'Write a prompt first.');
    return;
  }
  if (bad.length) addNotice('warn', `Unknown words (${bad.join(', ')}): the model will refuse them.`, { replaceKey: 'words' });
  startGeneration();
});

ui.pause.addEventListener('click', () => {
  if (!state.running) return;
  state.paused = !state.paused;
  if (state.paused) {
    state.pausedAt = performance.now();
    fifo.pause();
  }
  else {
    const now = performance.now();
    state.nextPaintAt = now;
    // frames/s of the running video: move the recent frame times past the pause
    const paused = now - (state.pausedAt || now);
    state.lastFrameTimes = state.lastFrameTimes.map((t) => t + paused);
    fifo.resume();
  }
  updateButtons();
  updateProgressLine();
});

ui.stop.addEventListener('click', async () => {
  if (!state.running) return;
  ui.stop.disabled = true;
  state.paused = false;
  await fifo.stop();
});

ui.download.addEventListener('click', async () => {
  ui.download.disabled = true;
  const frames = state.recorded.slice();
  try {
    const { encodeVideo } = await import('./export.js');
    const t0 = performance.now();
    const result = await encodeVideo(frames, {
      format: ui.format.value,
      fps: Number(ui.fps.value) || 8,
      scale: 4,
      onProgress: (i, n) => (ui.downloadStatus.textContent = `Encoding frame ${i} of ${n}…`),
    });
    const name = `fifo-${Date.now()}.${result.extension}`;
    saveBlob(result.blob, name);
    const dropped = state.droppedFromRecording ? ` (the first ${state.droppedFromRecording} frames were not kept)` : '';
    ui.downloadStatus.textContent =
      `Saved ${name}: ${frames.length} frames${dropped}, ${result.codec}, ${(result.blob.size / 1024).toFixed(0)} KiB in ${((performance.now() - t0) / 1000).toFixed(1)} s.` +
      (result.note ? ` ${result.note}` : '');
    window.fifoPage.lastDownload = { name, bytes: result.blob.size, codec: result.codec, extension: result.extension, note: result.note };
  } catch (e) {
    ui.downloadStatus.textContent = '';
    addNotice('error', `Could not save the video: ${e.message}`);
  } finally {
    updateButtons();
  }
});

ui.saveCheckpoint.addEventListener('click', async () => {
  try {
    const bytes = await fifo.checkpoint();
    saveBlob(new Blob([bytes], { type: 'application/octet-stream' }), `fifo-${state.generated}-frames.ckpt`);
  } catch (e) {
    addNotice('error', `Could not save a checkpoint: ${e.message}`);
  }
});

ui.loadCheckpoint.addEventListener('change', async () => {
  const file = ui.loadCheckpoint.files && ui.loadCheckpoint.files[0];
  ui.loadCheckpoint.value = '';
  if (!file || state.running) return;
  const bytes = new Uint8Array(await file.arrayBuffer());
  addNotice('info', `Continuing ${file.name} (its prompts and settings; the fields here are not used).`);
  startGeneration({ checkpoint: bytes });
});

function saveBlob(blob, name) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
}

for (const el of [ui.backend, ui.weights, ui.precision]) {
  el.addEventListener('change', () => {
    if (!state.running) ensureLoaded().catch(() => {});
  });
}

// ---------------------------------------------------------------------------------------------
// test hook (used by web/tests/e2e.mjs; harmless for visitors)

function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

window.fifoPage = {
  ready: null,
  lastDownload: null,
  /** What the page shows and holds, for tests. */
  state() {
    return {
      running: state.running,
      paused: state.paused,
      generated: state.generated,
      painted: state.painted,
      recorded: state.recorded.length,
      backend: state.ready ? state.ready.backend : null,
      loadedKey: state.loadedKey,
      model: state.ready ? state.ready.model : null,
      progress: ui.progress.textContent,
      device: ui.device.textContent,
      notices: Array.from(ui.notices.children, (n) => n.textContent),
      firstFrameSeconds: state.firstFrameAt ? (state.firstFrameAt - state.genStartedAt) / 1000 : null,
      rate: generationRate(),
      stats: state.lastStats,
    };
  },
  /**
   * generateFrames({...o, frames: o.split}), then checkpoint(), then generate({checkpoint}) for the
   * remaining o.frames - o.split frames: the continuation must equal an uninterrupted run.
   */
  async checkpointRoundTrip(o) {
    const first = await this.generateFrames({ ...o, frames: o.split });
    const ckpt = await fifo.checkpoint();
    const rest = [];
    const result = await fifo.generate({ checkpoint: ckpt, frames: o.frames - o.split }, (f) => {
      rest.push({ id: f.id, width: f.width, height: f.height, rgba: toBase64(new Uint8Array(f.rgba.buffer, f.rgba.byteOffset, f.rgba.byteLength)) });
    });
    return { checkpointBytes: ckpt.length, frames: first.frames.concat(rest), stats: result.stats };
  },
  /** Frames the last run generated (what a download would contain), as base64 RGBA. */
  recordedFrames(from = 0, count = Infinity) {
    return state.recorded.slice(from, from + count).map((f) => ({
      id: f.id,
      width: f.width,
      height: f.height,
      rgba: toBase64(new Uint8Array(f.rgba.buffer, f.rgba.byteOffset, f.rgba.byteLength)),
    }));
  },
  /**
   * Generates `frames` frames through fifo.js (not the buttons) and returns them as base64 RGBA.
   * Settings: {schedule, seed, partitions, lookahead, guidance, backend, weights, precision, frames, strictBackend}.
   */
  async generateFrames(o) {
    if (state.running) throw new Error('the page is generating; stop it first');
    await state.loading?.catch(() => {});
    state.hookBusy = true;
    updateButtons();
    try {
      const backend = o.backend || 'cpu';
      const weights = o.weights || 'f32';
      const precision = o.precision || 'auto';
      const t0 = performance.now();
      ui.backend.value = backend;
      ui.weights.value = weights;
      ui.precision.value = precision;
      const ready = await fifo.init({
        backend,
        weights,
        precision,
        strictBackend: o.strictBackend !== false,
        onProgress: onLoadProgress,
        onNotice: (n) => addNotice(n.level, n.message),
      });
      state.ready = ready;
      state.loadedKey = `${backend}|${weights}|${precision}`;
      showModel(ready, (performance.now() - t0) / 1000);
      const t1 = performance.now();
      let first = null;
      const frames = [];
      const result = await fifo.generate(
        {
          schedule: o.schedule,
          seed: o.seed,
          partitions: o.partitions,
          lookahead: o.lookahead,
          guidance: o.guidance,
          frames: o.frames,
        },
        (f) => {
          if (first === null) first = performance.now();
          paintFrame(f);
          frames.push({ id: f.id, width: f.width, height: f.height, rgba: toBase64(new Uint8Array(f.rgba.buffer, f.rgba.byteOffset, f.rgba.byteLength)) });
        },
      );
      const t2 = performance.now();
      setProgress(`Test run: ${frames.length} frames on the ${ready.backend === 'gpu' ? 'WebGPU' : 'CPU'} backend in ${((t2 - t1) / 1000).toFixed(1)} s.`);
      return {
        backend: ready.backend,
        info: ready.info,
        probe: ready.probe,
        model: ready.model,
        notices: ready.notices,
        stats: result.stats,
        precision: fifo.precision,
        frames,
        seconds: {
          init: (t1 - t0) / 1000,
          firstFrame: first === null ? null : (first - t1) / 1000,
          total: (t2 - t1) / 1000,
        },
      };
    } finally {
      state.hookBusy = false;
      updateButtons();
    }
  },
};

// ---------------------------------------------------------------------------------------------
// start-up

(async () => {
  // Say right away what the browser offers; the worker decides with the adapter in hand.
  if (!('gpu' in navigator)) {
    addNotice('warn', 'This browser has no WebGPU (navigator.gpu is missing): the generator runs on the CPU (WebAssembly), slower but with the same frames. WebGPU needs Chrome/Edge 113+ or a browser with WebGPU enabled.');
  }
  if (typeof Worker === 'undefined' || typeof WebAssembly === 'undefined') {
    addNotice('error', 'This browser lacks Web Workers or WebAssembly, which the generator needs.');
    setProgress('Cannot run here.');
    return;
  }
  checkPrompts();
  updateButtons();
  window.fifoPage.ready = ensureLoaded().then(
    () => true,
    () => false,
  );
})();
