// The generation worker (a module worker started by fifo.js). It owns the wasm module and the
// Generator, fetches the model package (through Cache Storage), picks the backend and streams
// frames back to the page, so that the page never freezes while the model runs.
//
// Protocol (all messages are plain objects with a `type`):
//   page -> worker: init, start, pause, resume, stop, ack, checkpoint, stats
//   worker -> page: reply {req, ok, value | error}, progress {phase, message, ...},
//                   notice {level, message}, frame {id, index, width, height, rgba, seconds},
//                   done {reason, frames, error?, stats}
// fifo.js is the only intended client; see web/README.md for the public API.

const CACHE_NAME = 'fifo-models-v1';

let wasm = null; // the wasm-bindgen module namespace once loaded
let probe = null; // gpu_probe() result
let generator = null; // the wasm Generator
let loaded = null; // {modelUrl, backend, weights, info}
let modelFiles = null; // {key, names, bytes, ...} of the last fetched model package
let job = null; // the running generation, see runJob
const pendingOps = []; // checkpoint/stats requests that must run between two frames
let wake = null; // resolves a waiting job loop

self.onmessage = (event) => {
  const msg = event.data;
  switch (msg.type) {
    case 'init':
      respond(msg.req, () => doInit(msg));
      break;
    case 'start':
      respond(msg.req, () => doStart(msg));
      break;
    case 'pause':
      if (job) {
        job.paused = true;
        progress('paused', 'paused');
      }
      break;
    case 'resume':
      if (job && job.paused) {
        job.paused = false;
        progress('running', 'resumed');
        poke();
      }
      break;
    case 'ack':
      if (job && msg.job === job.id) {
        job.acked += msg.count || 1;
        poke();
      }
      break;
    case 'stop':
      if (job) {
        job.stopped = true;
        job.stopWaiters.push(msg.req);
        poke();
      } else {
        reply(msg.req, true, { frames: 0 });
      }
      break;
    case 'checkpoint':
    case 'stats':
      if (job && job.running) {
        pendingOps.push(msg);
        poke();
      } else {
        respond(msg.req, () => runOp(msg));
      }
      break;
    default:
      reply(msg.req, false, `unknown message type ${msg.type}`);
  }
};

function post(message, transfer) {
  self.postMessage(message, transfer || []);
}

function reply(req, ok, value) {
  if (req === undefined || req === null) return;
  if (ok) post({ type: 'reply', req, ok: true, value });
  else post({ type: 'reply', req, ok: false, error: errorText(value) });
}

async function respond(req, fn) {
  try {
    reply(req, true, await fn());
  } catch (e) {
    reply(req, false, e);
  }
}

function errorText(e) {
  if (e === undefined || e === null) return 'unknown error';
  if (typeof WebAssembly !== 'undefined' && e instanceof WebAssembly.RuntimeError) {
    // A Rust panic (or a trap): the module's state is gone; fifo.js starts a fresh worker on the
    // next init().
    post({ type: 'crashed' });
    return `the WebAssembly module crashed (${e.message}); the panic message is in the browser console. Load the model again to continue.`;
  }
  if (typeof e === 'string') return e;
  if (e instanceof Error) return e.message || String(e);
  if (typeof e.message === 'string') return e.message;
  try {
    return JSON.stringify(e);
  } catch {
    return String(e);
  }
}

function progress(phase, message, extra) {
  post({ type: 'progress', phase, message, ...(extra || {}) });
}

function notice(level, message) {
  post({ type: 'notice', level, message });
}

function poke() {
  if (wake) {
    const w = wake;
    wake = null;
    w();
  }
}

function waitForPoke() {
  return new Promise((resolve) => {
    wake = resolve;
  });
}

// Lets queued messages (pause, stop, ack, checkpoint) run between two frames: a chain of
// already-resolved awaits would never give the event loop a turn.
function yieldToEventLoop() {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

// ---------------------------------------------------------------------------------------------
// init: wasm, WebGPU probe, model package, Generator

async function doInit(msg) {
  if (job && job.running) throw new Error('a generation is running; stop it before init');
  const t0 = performance.now();
  const backendWanted = msg.backend || 'auto';
  const weights = msg.weights || 'f32';
  if (!['auto', 'gpu', 'cpu'].includes(backendWanted)) throw new Error(`backend must be auto, gpu or cpu, not '${backendWanted}'`);
  if (!['f32', 'f16', 'int8'].includes(weights)) throw new Error(`weights must be f32, f16 or int8, not '${weights}'`);
  const precision = msg.precision || 'auto';
  if (!['auto', 'f32', 'f16'].includes(precision)) throw new Error(`precision must be auto, f32 or f16, not '${precision}'`);
  const modelUrl = new URL(msg.modelUrl || 'models/shapes-t2v-tiny/', msg.baseUrl || self.location.href);
  if (!modelUrl.pathname.endsWith('/')) modelUrl.pathname += '/';

  if (!wasm) {
    progress('wasm', 'loading the WebAssembly module');
    const url = new URL(msg.pkgUrl || './pkg/fifo_web.js', msg.baseUrl || self.location.href);
    let mod;
    try {
      mod = await import(url.href);
    } catch (e) {
      throw new Error(`cannot load ${url.href} (was web/build.sh run?): ${errorText(e)}`);
    }
    await mod.default();
    wasm = mod;
  }
  const tWasm = performance.now();

  if (!probe) {
    progress('probe', 'looking for a WebGPU adapter');
    probe = await probeGpu();
  }
  const tProbe = performance.now();

  const files = await fetchModel(modelUrl, weights);
  const tFetch = performance.now();

  const notices = [];
  const say = (level, message) => {
    notices.push({ level, message });
    notice(level, message);
  };
  let backend;
  if (backendWanted === 'cpu') {
    backend = 'cpu';
  } else if (!probe.available) {
    backend = 'cpu';
    say('warn', `WebGPU is not available here (${probe.reason || 'no adapter'}); using the WebAssembly CPU backend (slower, same frames).`);
  } else if (probe.fallback && backendWanted === 'auto') {
    backend = 'cpu';
    say(
      'info',
      `The only WebGPU adapter is a software fallback (${probe.name || 'unnamed'}), which is very slow for compute; ` +
        'using the WebAssembly CPU backend instead (choose backend "gpu" to force the adapter).',
    );
  } else {
    backend = 'gpu';
    if (probe.fallback) {
      say('warn', `Using the software fallback WebGPU adapter (${probe.name || 'unnamed'}) as asked: expect it to be very slow.`);
    }
  }

  if (generator) {
    generator.free();
    generator = null;
    loaded = null;
  }
  progress('load', `building the model on the ${backend === 'gpu' ? 'WebGPU' : 'CPU'} backend`);
  try {
    generator = await wasm.Generator.load(files.names, files.bytes, JSON.stringify({ backend, weights, precision }));
  } catch (e) {
    if (backend !== 'gpu' || msg.strictBackend) throw e;
    say('warn', `The WebGPU backend could not be used: ${errorText(e)} Using the WebAssembly CPU backend instead (slower, same frames).`);
    backend = 'cpu';
    progress('load', 'building the model on the CPU backend');
    generator = await wasm.Generator.load(files.names, files.bytes, JSON.stringify({ backend, weights, precision }));
  }
  const info = JSON.parse(generator.info());
  const tLoad = performance.now();
  loaded = { modelUrl: modelUrl.href, backend, weights, precision, info };
  progress('ready', 'ready');
  return {
    info,
    probe,
    backend: info.backend || backend,
    weights,
    notices,
    model: { url: modelUrl.href, bytes: files.total, fromCache: files.fromCache, files: files.names },
    seconds: {
      wasm: (tWasm - t0) / 1000,
      probe: (tProbe - tWasm) / 1000,
      fetch: (tFetch - tProbe) / 1000,
      load: (tLoad - tFetch) / 1000,
      total: (tLoad - t0) / 1000,
    },
  };
}

async function probeGpu() {
  try {
    const p = JSON.parse(await wasm.gpu_probe());
    const probe = {
      available: !!p.available,
      name: p.name || '',
      backend: p.backend || '',
      fallback: !!p.fallback,
      reason: p.reason || null,
    };
    if (probe.available) {
      const label = await adapterLabel();
      if (label) probe.name = label;
    }
    return probe;
  } catch (e) {
    return { available: false, name: '', backend: '', fallback: false, reason: errorText(e) };
  }
}

// A readable adapter name from WebGPU's adapter.info (wgpu only sees the often empty description):
// "google swiftshader (SwiftShader Device (Subzero))", "nvidia ampere", ...
async function adapterLabel() {
  try {
    const gpu = self.navigator && self.navigator.gpu;
    if (!gpu) return null;
    const adapter = await gpu.requestAdapter();
    const info = adapter && adapter.info;
    if (!info) return null;
    const main = [info.vendor, info.architecture].filter(Boolean).join(' ');
    const text = [main, info.description ? `(${info.description})` : '', info.device && !info.description ? `(${info.device})` : '']
      .filter(Boolean)
      .join(' ')
      .trim();
    return text || null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// The model package: files.json (written by build.sh: every file with size and sha256) names what
// to fetch; without it, model.json's graphs plus `<file>.data` where the server has one.
// Downloads are kept in Cache Storage keyed by URL + sha256 (or size), so a new model invalidates.

async function fetchModel(modelUrl, weights) {
  const key = `${modelUrl.href}|${weights}`;
  if (modelFiles && modelFiles.key === key) return modelFiles;
  modelFiles = null;

  progress('fetch', 'reading the model package index');
  let listing = null;
  try {
    const r = await fetch(new URL('files.json', modelUrl), { cache: 'no-cache' });
    if (r.ok) listing = await r.json();
  } catch {
    listing = null;
  }
  const byName = new Map();
  if (listing && Array.isArray(listing.files)) for (const f of listing.files) byName.set(f.name, f);

  // model.json is small: always fetched fresh (it decides which graphs we need).
  const modelJsonResp = await fetch(new URL('model.json', modelUrl), { cache: 'no-cache' });
  if (!modelJsonResp.ok) throw new Error(`cannot fetch ${new URL('model.json', modelUrl).href}: HTTP ${modelJsonResp.status}`);
  const modelJsonBytes = new Uint8Array(await modelJsonResp.arrayBuffer());
  let model;
  try {
    model = JSON.parse(new TextDecoder().decode(modelJsonBytes));
  } catch (e) {
    throw new Error(`model.json is not valid JSON: ${errorText(e)}`);
  }
  const graphs = model.graphs || {};
  const need = [];
  const add = (file) => {
    if (typeof file === 'string' && file && !need.includes(file)) need.push(file);
  };
  add(graphs.text_encoder && graphs.text_encoder.file);
  if (weights === 'int8' || weights === 'f16') {
    if (!(graphs.unet && graphs.unet[weights])) {
      throw new Error(`the model package '${model.name}' has no ${weights} UNet (no graphs.unet.${weights} in model.json); choose f32 weights`);
    }
    add(graphs.unet[weights]);
  } else {
    add(graphs.unet && graphs.unet.file);
  }
  add(graphs.decoder && graphs.decoder.file);
  add(graphs.decoder && graphs.decoder.first); // a causal video decoder's first-latent graph (Wan)
  // A Hugging Face tokenizer lives in its own file (CLIP BPE, T5 unigram); `words` is inline.
  const text = model.text || {};
  if (text.tokenizer === 'huggingface') add(text.file || 'tokenizer.json');

  const wanted = []; // {name, size|null, sha256|null, optional}
  for (const file of need) {
    const meta = byName.get(file);
    if (listing && !meta) throw new Error(`files.json of ${modelUrl.href} does not list ${file}, which model.json names`);
    wanted.push({ name: file, size: meta ? meta.size : null, sha256: meta ? meta.sha256 : null, optional: false });
    const data = `${file}.data`;
    if (byName.has(data)) {
      const m = byName.get(data);
      wanted.push({ name: data, size: m.size, sha256: m.sha256, optional: false });
    } else if (!listing) {
      wanted.push({ name: data, size: null, sha256: null, optional: true });
    }
  }

  const cache = await openCache();
  const total = wanted.reduce((s, f) => s + (f.size || 0), modelJsonBytes.length);
  let done = modelJsonBytes.length;
  let fromCache = 0;
  const names = ['model.json'];
  const bytes = [modelJsonBytes];
  const keep = new Set();
  const report = (name) =>
    progress('fetch', `model ${name}: ${mib(done)} of ${mib(total)} MiB`, { loaded: done, total });

  for (const f of wanted) {
    const url = new URL(f.name, modelUrl).href;
    const cacheKey = `${url}?${f.sha256 ? 'sha256=' + f.sha256 : 'size=' + (f.size ?? 'unknown')}`;
    keep.add(cacheKey);
    let body = null;
    if (cache && (f.sha256 || f.size)) {
      const hit = await cache.match(cacheKey);
      if (hit) {
        const b = new Uint8Array(await hit.arrayBuffer());
        if (f.size === null || b.length === f.size) {
          body = b;
          fromCache += b.length;
          done += b.length;
          report(f.name);
        }
      }
    }
    if (!body) {
      const r = await fetch(url, { cache: 'no-cache' });
      if (!r.ok) {
        if (f.optional && (r.status === 404 || r.status === 410)) continue;
        throw new Error(`cannot fetch ${url}: HTTP ${r.status}`);
      }
      body = await readWithProgress(r, (n) => {
        done += n;
        report(f.name);
      });
      if (f.size !== null && body.length !== f.size) {
        throw new Error(`${url} has ${body.length} bytes, files.json says ${f.size} (an interrupted download or a stale files.json)`);
      }
      if (f.sha256 && self.crypto && crypto.subtle) {
        const digest = hex(new Uint8Array(await crypto.subtle.digest('SHA-256', body)));
        if (digest !== f.sha256) throw new Error(`${url} does not match its sha256 in files.json (${digest} != ${f.sha256})`);
      }
      if (cache && (f.sha256 || f.size)) {
        try {
          await cache.put(
            cacheKey,
            new Response(body, { headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length) } }),
          );
        } catch (e) {
          notice('info', `could not cache ${f.name} in the browser (${errorText(e)}); it will be downloaded again next time`);
        }
      }
    }
    names.push(f.name);
    bytes.push(body);
  }

  // Drop cached versions of this package's files that the current files.json no longer names.
  if (cache && listing) {
    try {
      for (const req of await cache.keys()) {
        if (req.url.startsWith(modelUrl.href) && !keep.has(req.url)) {
          // Entries of the other weights variant stay; only stale versions go.
          const plain = req.url.split('?')[0];
          const name = plain.slice(modelUrl.href.length);
          const meta = byName.get(name);
          const current = meta && req.url === `${plain}?${meta.sha256 ? 'sha256=' + meta.sha256 : 'size=' + meta.size}`;
          if (!current) await cache.delete(req);
        }
      }
    } catch {
      // cache housekeeping is best effort
    }
  }

  modelFiles = { key, names, bytes, total: done, fromCache };
  return modelFiles;
}

async function openCache() {
  try {
    if (self.caches) return await caches.open(CACHE_NAME);
  } catch {
    // Cache Storage needs a secure context (https or localhost); without it we just download.
  }
  return null;
}

async function readWithProgress(response, onBytes) {
  if (!response.body || !response.body.getReader) {
    const b = new Uint8Array(await response.arrayBuffer());
    onBytes(b.length);
    return b;
  }
  const reader = response.body.getReader();
  const chunks = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    length += value.length;
    onBytes(value.length);
  }
  const out = new Uint8Array(length);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function mib(n) {
  return (n / (1024 * 1024)).toFixed(1);
}

// ---------------------------------------------------------------------------------------------
// generation

let jobCounter = 0;

async function doStart(msg) {
  if (!generator) throw new Error('init() first: no model is loaded');
  if (job && job.running) throw new Error('a generation is already running; stop it first');
  const o = msg.options || {};
  const frames = o.frames === undefined || o.frames === null || o.frames === Infinity ? null : Math.floor(o.frames);
  if (frames !== null && !(frames >= 0)) throw new Error(`frames must be a non-negative number or Infinity, got ${o.frames}`);
  const settings = {};
  if (o.checkpoint === undefined || o.checkpoint === null) {
    if (typeof o.schedule !== 'string' || !o.schedule.trim()) throw new Error('a prompt or a prompt schedule is needed');
    settings.schedule = o.schedule;
    for (const k of ['seed', 'partitions', 'lookahead', 'guidance', 'eta', 'init']) {
      if (o[k] !== undefined && o[k] !== null && o[k] !== '') settings[k] = o[k];
    }
  }
  pendingOps.length = 0;
  job = {
    id: msg.job ?? ++jobCounter,
    running: true,
    paused: false,
    stopped: false,
    stopWaiters: [],
    frames,
    produced: 0,
    acked: 0,
    maxAhead: Math.max(1, o.maxAhead || 32),
    t0: performance.now(),
  };
  const current = job;
  // Start (or resume) before replying, so that bad settings reject generate() itself.
  try {
    if (o.checkpoint) {
      progress('start', 'resuming from the checkpoint');
      await generator.resume(o.checkpoint instanceof Uint8Array ? o.checkpoint : new Uint8Array(o.checkpoint));
    } else {
      progress('start', 'starting');
      await generator.start(JSON.stringify(settings));
    }
  } catch (e) {
    current.running = false;
    job = null;
    throw e;
  }
  runJob(current);
  // The UNet is built by now: say what it computes in (null on the CPU backend: f32).
  return { job: current.id, precision: JSON.parse(generator.info()).precision };
}

async function runJob(j) {
  let reason = 'frames';
  let error = null;
  try {
    if (j.frames !== 0) progress('warmup', 'sampling the start clip (queue warm-up)');
    while (j.frames === null || j.produced < j.frames) {
      await runPendingOps();
      while (!j.stopped && (j.paused || j.produced - j.acked >= j.maxAhead)) {
        await waitForPoke();
        await runPendingOps();
      }
      if (j.stopped) {
        reason = 'stopped';
        break;
      }
      const f = await generator.next_frame();
      const frame = takeFrame(f);
      const seconds = (performance.now() - j.t0) / 1000;
      post(
        { type: 'frame', job: j.id, index: j.produced, id: frame.id, width: frame.width, height: frame.height, rgba: frame.rgba, seconds },
        [frame.rgba.buffer],
      );
      if (j.produced === 0) progress('running', 'generating');
      j.produced++;
      await yieldToEventLoop();
    }
    if (j.stopped) reason = 'stopped';
  } catch (e) {
    reason = 'error';
    error = errorText(e);
  }
  j.running = false;
  // Requests that arrived during the last frame still get their answer.
  await runPendingOps();
  let stats = null;
  try {
    stats = JSON.parse(generator.stats());
  } catch {
    stats = null;
  }
  if (job === j) job = null;
  post({ type: 'done', job: j.id, reason, frames: j.produced, error, stats, seconds: (performance.now() - j.t0) / 1000 });
  for (const req of j.stopWaiters) reply(req, true, { frames: j.produced });
}

function takeFrame(f) {
  const id = Number(f.id);
  const width = Number(f.width);
  const height = Number(f.height);
  let rgba = f.rgba;
  if (typeof f.free === 'function') f.free();
  if (!(rgba instanceof Uint8Array)) rgba = new Uint8Array(rgba);
  // Own the buffer so that it can be transferred (a view into wasm memory must be copied).
  if (rgba.byteOffset !== 0 || rgba.byteLength !== rgba.buffer.byteLength || !(rgba.buffer instanceof ArrayBuffer)) {
    rgba = rgba.slice();
  }
  if (rgba.length !== width * height * 4) {
    throw new Error(`frame ${id}: ${rgba.length} bytes of RGBA for ${width}x${height}`);
  }
  return { id, width, height, rgba };
}

async function runPendingOps() {
  while (pendingOps.length) {
    const op = pendingOps.shift();
    await respond(op.req, () => runOp(op));
  }
}

async function runOp(op) {
  if (!generator) throw new Error('init() first: no model is loaded');
  if (op.type === 'checkpoint') {
    const c = await generator.checkpoint();
    const bytes = c instanceof Uint8Array ? c.slice() : new Uint8Array(c);
    return bytes;
  }
  if (op.type === 'stats') return JSON.parse(generator.stats());
  throw new Error(`unknown operation ${op.type}`);
}

self.addEventListener('unhandledrejection', (event) => {
  notice('error', `worker: ${errorText(event.reason)}`);
});
