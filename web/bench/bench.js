// The benchmark page: our executor (fifo_web.wasm's OnnxSession, wasm CPU backend or WebGPU) and
// onnxruntime-web (wasm EP or WebGPU EP) on the same ONNX file with the same seeded inputs.
// web/bench/run.mjs serves web/dist at /, this folder at /bench/ and onnxruntime-web's dist/ at
// /ort/ (with COOP/COEP, so ORT's wasm can use threads), then calls window.bench.run(spec) for
// each case (both executors, runs interleaved), window.bench.compare(name, backend) for the
// outputs, and prints the table.
// URL parameters: ortThreads (default 2), ortBundle (the onnxruntime-web ES module under /ort/,
// default ort.min.mjs = what `import 'onnxruntime-web'` loads in a browser without a bundler
// choice; ort.webgpu.min.mjs = `onnxruntime-web/webgpu`).

import init, { OnnxSession } from '/pkg/fifo_web.js';

const params = new URLSearchParams(location.search);
const ORT_THREADS = Number(params.get('ortThreads') || 2);
const ORT_BUNDLE = params.get('ortBundle') || 'ort.min.mjs';

const logEl = document.getElementById('log');
function log(msg) {
  if (logEl) logEl.textContent += msg + '\n';
}

let ort = null;
const bytesCache = new Map();
const outputs = new Map(); // `name|backend` -> {ours, ort}: the last output of each executor
const references = new Map(); // case name -> ORT wasm's output (the CPU reference for the GPU cases)

async function fetchBytes(url) {
  if (!bytesCache.has(url)) {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`GET ${url}: ${r.status} ${r.statusText}`);
    bytesCache.set(url, new Uint8Array(await r.arrayBuffer()));
  }
  return bytesCache.get(url);
}

// mulberry32: a small seeded generator, so every run and both executors see the same inputs.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Input data of one kind: uniform [-1, 1), normal (Box-Muller), or timesteps (whole numbers
 * spread over [0, 999] along the last axis, like FIFO's queue of noise levels). */
function makeInput(kind, shape, seed) {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  const r = rng(seed);
  if (kind === 'normal') {
    for (let i = 0; i < n; i += 2) {
      const u = Math.max(r(), 1e-12);
      const v = r();
      const m = Math.sqrt(-2 * Math.log(u));
      out[i] = m * Math.cos(2 * Math.PI * v);
      if (i + 1 < n) out[i + 1] = m * Math.sin(2 * Math.PI * v);
    }
  } else if (kind === 'timesteps') {
    const last = shape[shape.length - 1];
    for (let i = 0; i < n; i++) out[i] = Math.round((999 * ((i % last) + 0.5)) / last);
  } else {
    for (let i = 0; i < n; i++) out[i] = 2 * r() - 1;
  }
  return out;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function errorText(e) {
  if (e instanceof Error) return e.message || String(e);
  return String(e);
}

/**
 * Builds each executor's session, runs each once (warm-up, timed as `firstMs`), then alternates
 * timed runs of the executors (ours, ORT, ours, ORT, ...) so that load from elsewhere on the
 * machine hits both alike: as many rounds as fit in budgetMs (a round costing the warm-ups), within
 * [minRuns, maxRuns]. An executor whose warm-up took longer than singleRunLimitMs gets no further
 * runs: its warm-up time is its figure (marked cold).
 */
async function measureAll(executors, spec) {
  const res = {};
  const live = [];
  for (const [impl, ex] of executors) {
    try {
      const t = performance.now();
      const output = await ex.run();
      const firstMs = performance.now() - t;
      res[impl] = { buildMs: ex.buildMs, firstMs, times: [], output, info: ex.info };
      if (firstMs > spec.singleRunLimitMs) Object.assign(res[impl], { times: [firstMs], cold: true });
      else live.push([impl, ex]);
    } catch (e) {
      res[impl] = { error: errorText(e) };
      await ex.close();
    }
  }
  const round = Math.max(1e-3, live.reduce((sum, [impl]) => sum + res[impl].firstMs, 0));
  const n = live.length ? Math.max(spec.minRuns, Math.min(spec.maxRuns, Math.floor(spec.budgetMs / round))) : 0;
  for (let i = 0; i < n; i++) {
    for (const [impl, ex] of live) {
      const r = res[impl];
      if (r.error) continue;
      try {
        const t = performance.now();
        r.output = await ex.run();
        r.times.push(performance.now() - t);
      } catch (e) {
        res[impl] = { error: errorText(e) };
      }
    }
  }
  for (const [impl, ex] of executors) {
    const r = res[impl];
    if (!r.error) Object.assign(r, { ms: median(r.times), n: r.times.length, cold: !!r.cold });
    await ex.close();
  }
  return res;
}

async function buildOurs(spec, model, dataNames, dataFiles, inputs) {
  const shapes = Object.fromEntries(spec.inputs.map((i) => [i.name, i.shape]));
  const t = performance.now();
  const session = await OnnxSession.build(model.slice(), dataNames, dataFiles.map((d) => d.slice()),
    JSON.stringify(shapes), spec.backend);
  const buildMs = performance.now() - t;
  const names = spec.inputs.map((i) => i.name);
  return {
    buildMs,
    info: JSON.parse(session.info()),
    async run() {
      const outs = await session.run(names, names.map((n) => inputs[n]));
      const o = spec.output ? outs.find((x) => x.name === spec.output) : outs[0];
      if (!o) throw new Error(`no output '${spec.output}' among ${outs.map((x) => x.name).join(', ')}`);
      return { data: o.data, shape: Array.from(o.shape) };
    },
    async close() {
      session.free();
    },
  };
}

async function buildOrt(spec, model, dataNames, dataFiles, inputs) {
  const options = {
    executionProviders: [spec.backend === 'gpu' ? 'webgpu' : 'wasm'],
    graphOptimizationLevel: 'all',
  };
  if (dataNames.length) options.externalData = dataNames.map((path, i) => ({ path, data: dataFiles[i].slice() }));
  const t = performance.now();
  const session = await ort.InferenceSession.create(model.slice(), options);
  const buildMs = performance.now() - t;
  const outName = spec.output || session.outputNames[0];
  return {
    buildMs,
    async run() {
      const feeds = {};
      for (const i of spec.inputs) feeds[i.name] = new ort.Tensor('float32', inputs[i.name], i.shape);
      const res = await session.run(feeds);
      const o = res[outName];
      const data = o.location && o.location !== 'cpu' ? await o.getData(true) : o.data;
      return { data, shape: Array.from(o.dims) };
    },
    async close() {
      await session.release();
    },
  };
}

function compareOutputs(a, b) {
  if (!a || !b) return null;
  if (a.data.length !== b.data.length) return { error: `output shapes differ: [${a.shape}] vs [${b.shape}]` };
  let maxAbs = 0;
  let refMax = 0;
  let nonFinite = 0;
  for (let i = 0; i < a.data.length; i++) {
    const x = a.data[i];
    const y = b.data[i];
    if (!Number.isFinite(x) || !Number.isFinite(y)) {
      if (!(Number.isNaN(x) && Number.isNaN(y)) && x !== y) nonFinite++;
      continue;
    }
    maxAbs = Math.max(maxAbs, Math.abs(x - y));
    refMax = Math.max(refMax, Math.abs(y));
  }
  return { maxAbs: nonFinite ? null : maxAbs, refMaxAbs: refMax, nonFinite, elements: a.data.length };
}

async function adapterInfo() {
  if (!('gpu' in navigator)) return { error: 'navigator.gpu is missing' };
  try {
    const a = await navigator.gpu.requestAdapter();
    if (!a) return { error: 'requestAdapter() returned null' };
    const i = a.info || {};
    return {
      vendor: i.vendor, architecture: i.architecture, description: i.description, device: i.device,
      isFallbackAdapter: a.isFallbackAdapter ?? i.isFallbackAdapter ?? null,
      features: Array.from(a.features || []).sort(),
    };
  } catch (e) {
    return { error: errorText(e) };
  }
}

window.bench = {
  ready: (async () => {
    await init();
    ort = await import(`/ort/${ORT_BUNDLE}`);
    ort.env.wasm.wasmPaths = '/ort/';
    ort.env.wasm.numThreads = ORT_THREADS;
    ort.env.logLevel = 'error';
    return {
      userAgent: navigator.userAgent,
      hardwareConcurrency: navigator.hardwareConcurrency,
      crossOriginIsolated: self.crossOriginIsolated,
      ortVersion: ort.env.versions?.web || ort.env.versions?.common || null,
      ortBundle: ORT_BUNDLE,
      ortThreads: ORT_THREADS,
      adapter: await adapterInfo(),
    };
  })(),

  /**
   * One case: spec {name, backend: 'cpu'|'gpu', impls: ['ours', 'ort'], model: url, data: [url],
   * inputs: [{name, shape, kind, seed}], output, minRuns, maxRuns, budgetMs, singleRunLimitMs}.
   * Returns {ours, ort}, each {buildMs, firstMs, times, ms, n, cold, outputShape} or {error}.
   */
  async run(spec) {
    await this.ready;
    log(`${spec.name} (${spec.backend}) ...`);
    const result = {};
    const executors = [];
    try {
      const model = await fetchBytes(spec.model);
      const dataFiles = [];
      for (const url of spec.data || []) dataFiles.push(await fetchBytes(url));
      const dataNames = (spec.data || []).map((u) => u.split('/').pop());
      const inputs = Object.fromEntries(spec.inputs.map((i) => [i.name, makeInput(i.kind, i.shape, i.seed)]));
      for (const impl of spec.impls) {
        try {
          executors.push([impl, await (impl === 'ours' ? buildOurs : buildOrt)(spec, model, dataNames, dataFiles, inputs)]);
        } catch (e) {
          result[impl] = { error: errorText(e) };
        }
      }
      Object.assign(result, await measureAll(executors, spec));
    } catch (e) {
      for (const impl of spec.impls) result[impl] ??= { error: errorText(e) };
    }
    const key = `${spec.name}|${spec.backend}`;
    outputs.set(key, {});
    for (const impl of spec.impls) {
      const r = result[impl];
      if (r.output) {
        outputs.get(key)[impl] = r.output;
        r.outputShape = r.output.shape;
        delete r.output;
      }
      log(`  ${impl}: ${r.error ? `error: ${r.error}` : `${r.ms.toFixed(2)} ms (median of ${r.n})`}`);
    }
    return result;
  },

  /**
   * Max abs difference between the last outputs of ours and ORT on case `name` on `backend`, and
   * for the GPU of each against the CPU reference (ORT wasm's output of the same case, kept from
   * the CPU pair); frees the outputs. With keepReference false nothing is kept.
   */
  compare(name, backend, keepReference = true) {
    const key = `${name}|${backend}`;
    const o = outputs.get(key) || {};
    outputs.delete(key);
    const result = compareOutputs(o.ours, o.ort);
    if (backend === 'cpu' && keepReference && o.ort) references.set(name, o.ort);
    if (backend !== 'cpu' && result) {
      const ref = references.get(name);
      result.oursVsCpu = compareOutputs(o.ours, ref);
      result.ortVsCpu = compareOutputs(o.ort, ref);
    } else if (backend !== 'cpu' && references.has(name)) {
      return { oursVsCpu: compareOutputs(o.ours, references.get(name)), ortVsCpu: compareOutputs(o.ort, references.get(name)) };
    }
    return result;
  },
};
