// fifo.js: FIFO-Diffusion text-to-video in the browser, as a small ES module.
//
//   import * as fifo from './fifo.js';
//   const ready = await fifo.init({ backend: 'auto', weights: 'f32' });
//   console.log(ready.backend, ready.info.vocabulary);
//   const run = fifo.generate({ prompt: 'a red circle moving right on a black background', frames: 48 },
//                             (frame) => ctx.putImageData(new ImageData(frame.rgba, frame.width, frame.height), 0, 0));
//   ... fifo.pause(); fifo.resume(); const ckpt = await fifo.checkpoint(); await fifo.stop();
//   const summary = await run;   // {frames, reason: 'frames' | 'stopped', stats, seconds}
//
// Everything runs in a module worker (worker.js next to this file), which loads the wasm build
// (pkg/fifo_web.js) and the model package; this module only passes messages. The full reference
// is in web/README.md. The module-level functions drive one shared generator; `new FifoGenerator()`
// makes independent ones (each with its own worker and model copy).

const here = new URL('.', import.meta.url);

export class FifoGenerator {
  /**
   * @param {object} [options]
   * @param {string|URL} [options.workerUrl] the worker script (default: worker.js beside fifo.js)
   */
  constructor(options = {}) {
    this._workerUrl = new URL(options.workerUrl || 'worker.js', here);
    this._worker = null;
    this._req = 0;
    this._pending = new Map();
    this._run = null; // the current generate() call
    this._jobs = 0;
    this._onProgress = null;
    this._onNotice = null;
    this.ready = null; // the last init() result
  }

  _ensureWorker() {
    if (this._worker) return this._worker;
    const worker = new Worker(this._workerUrl, { type: 'module', name: 'fifo-diffusion' });
    worker.onmessage = (e) => this._onMessage(e.data);
    worker.onerror = (e) => {
      e.preventDefault?.();
      const message = `the generation worker failed: ${e.message || 'error loading worker.js (module workers need Chrome/Edge 80+, Firefox 114+, Safari 15+)'}`;
      this._failAll(new Error(message));
    };
    worker.onmessageerror = () => this._failAll(new Error('the generation worker sent a message that could not be read'));
    this._worker = worker;
    return worker;
  }

  _failAll(error) {
    for (const { reject } of this._pending.values()) reject(error);
    this._pending.clear();
    if (this._run) {
      const run = this._run;
      this._run = null;
      run.reject(error);
    }
    this._notice({ level: 'error', message: error.message });
  }

  _call(type, fields = {}, transfer = []) {
    const worker = this._ensureWorker();
    const req = ++this._req;
    return new Promise((resolve, reject) => {
      this._pending.set(req, { resolve, reject });
      worker.postMessage({ type, req, ...fields }, transfer);
    });
  }

  _send(type, fields = {}) {
    if (this._worker) this._worker.postMessage({ type, ...fields });
  }

  _notice(n) {
    if (this._onNotice) {
      try {
        this._onNotice(n);
      } catch (e) {
        console.error(e);
      }
    } else if (n.level === 'error') console.error(n.message);
    else console.info(n.message);
  }

  _onMessage(msg) {
    switch (msg.type) {
      case 'reply': {
        const p = this._pending.get(msg.req);
        if (!p) return;
        this._pending.delete(msg.req);
        if (msg.ok) p.resolve(msg.value);
        else p.reject(new Error(msg.error));
        break;
      }
      case 'progress':
        if (this._run && this._run.onProgress) safeCall(this._run.onProgress, msg);
        if (this._onProgress) safeCall(this._onProgress, msg);
        break;
      case 'notice':
        this._notice(msg);
        break;
      case 'frame':
        this._onFrame(msg);
        break;
      case 'done':
        this._onDone(msg);
        break;
      case 'crashed':
        this._crashed = true;
        this.ready = null;
        break;
    }
  }

  _onFrame(msg) {
    const run = this._run;
    if (!run || run.job !== msg.job) return;
    run.frames++;
    const frame = {
      id: msg.id,
      index: msg.index,
      width: msg.width,
      height: msg.height,
      rgba: new Uint8ClampedArray(msg.rgba.buffer, msg.rgba.byteOffset, msg.rgba.byteLength),
      seconds: msg.seconds,
    };
    const ack = () => this._send('ack', { job: msg.job, count: 1 });
    let result;
    try {
      result = run.onFrame ? run.onFrame(frame) : undefined;
    } catch (e) {
      ack();
      run.failure = e;
      this.stop();
      return;
    }
    if (result && typeof result.then === 'function') {
      result.then(ack, (e) => {
        ack();
        run.failure = e;
        this.stop();
      });
    } else ack();
  }

  _onDone(msg) {
    const run = this._run;
    if (!run || run.job !== msg.job) return;
    this._run = null;
    if (run.failure) run.reject(run.failure);
    else if (msg.reason === 'error') run.reject(new Error(msg.error));
    else run.resolve({ frames: msg.frames, reason: msg.reason, stats: msg.stats, seconds: msg.seconds });
  }

  /**
   * Loads the wasm module and the model package and builds the model on a backend.
   * Call again to switch backend or weights (not while generating).
   *
   * @param {object} [options]
   * @param {string} [options.model] the model package folder URL (default 'models/shapes-t2v-tiny/', relative to the page)
   * @param {'auto'|'gpu'|'cpu'} [options.backend] 'auto' (default) takes a hardware WebGPU adapter, else the CPU
   * @param {'f32'|'f16'|'int8'} [options.weights] UNet weights (default 'f32')
   * @param {'auto'|'f32'|'f16'} [options.precision] the UNet's arithmetic on WebGPU: 'auto' (default)
   *   computes in f16 for f16/int8 weights where the adapter has shader-f16, else in f32
   * @param {boolean} [options.strictBackend] fail instead of falling back to the CPU when the GPU cannot be used
   * @param {(p: {phase: string, message: string, loaded?: number, total?: number}) => void} [options.onProgress]
   * @param {(n: {level: 'info'|'warn'|'error', message: string}) => void} [options.onNotice]
   * @returns {Promise<{info: object, probe: object, backend: 'gpu'|'cpu', weights: string,
   *                    notices: {level: string, message: string}[], model: object, seconds: object}>}
   */
  async init(options = {}) {
    if (this._run) throw new Error('a generation is running; stop() it before init()');
    if (this._crashed && this._worker) {
      // The wasm instance panicked: its memory cannot be trusted; start over in a new worker.
      this._worker.terminate();
      this._worker = null;
      this._crashed = false;
    }
    if (options.onProgress !== undefined) this._onProgress = options.onProgress;
    if (options.onNotice !== undefined) this._onNotice = options.onNotice;
    const baseUrl = typeof document !== 'undefined' ? document.baseURI : self.location.href;
    const model = new URL(options.model || 'models/shapes-t2v-tiny/', baseUrl).href;
    this.ready = await this._call('init', {
      modelUrl: model,
      baseUrl: here.href,
      pkgUrl: new URL('pkg/fifo_web.js', here).href,
      backend: options.backend || 'auto',
      weights: options.weights || 'f32',
      precision: options.precision || 'auto',
      strictBackend: !!options.strictBackend,
    });
    return this.ready;
  }

  /**
   * Generates frames, calling onFrame for each as it leaves the queue.
   *
   * @param {object} options
   * @param {string} [options.prompt] one prompt for the whole video (or use schedule)
   * @param {string} [options.schedule] `FRAME: prompt` / `FRAME..END: prompt` lines
   * @param {number} [options.seed] default 0
   * @param {number} [options.partitions] default: the model's
   * @param {boolean} [options.lookahead] default: the model's
   * @param {number} [options.guidance] default: the model's
   * @param {number} [options.frames] how many frames (default Infinity: until stop())
   * @param {Uint8Array} [options.checkpoint] continue a checkpoint instead (prompt and settings come from it)
   * @param {number} [options.maxAhead] frames the worker may run ahead of settled onFrame calls (default 32)
   * @param {(p: object) => void} [options.onProgress]
   * @param {(frame: {id: number, index: number, width: number, height: number,
   *                  rgba: Uint8ClampedArray, seconds: number}) => (void|Promise<void>)} onFrame
   *        a returned promise holds the worker back (at most maxAhead frames ahead) until it settles
   * @returns {Promise<{frames: number, reason: 'frames'|'stopped', stats: object, seconds: number}>}
   *          settles when the frames are done or stop() was called; rejects on a model error
   */
  async generate(options, onFrame) {
    if (!this.ready) throw new Error('init() first');
    if (this._run) throw new Error('a generation is already running; stop() it first');
    const o = { ...options };
    const onProgress = o.onProgress;
    delete o.onProgress;
    if (o.schedule === undefined && o.prompt !== undefined) o.schedule = `0: ${String(o.prompt).trim()}`;
    delete o.prompt;
    if (o.frames === Infinity) o.frames = null;
    const transfer = [];
    if (o.checkpoint) {
      o.checkpoint = new Uint8Array(o.checkpoint).slice();
      transfer.push(o.checkpoint.buffer);
    }
    const run = { job: ++this._jobs, frames: 0, onFrame, onProgress, failure: null };
    let resolve, reject;
    const done = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    run.resolve = resolve;
    run.reject = reject;
    this._run = run;
    try {
      const started = await this._call('start', { job: run.job, options: o }, transfer);
      /** What the running video's UNet computes in on WebGPU ('f32' or 'f16'; null on the CPU). */
      this.precision = started ? started.precision : null;
    } catch (e) {
      if (this._run === run) this._run = null;
      throw e;
    }
    return done;
  }

  /** Pauses generation after the current frame (the worker keeps its state). */
  pause() {
    this._send('pause');
  }

  /** Resumes a paused generation. */
  resume() {
    this._send('resume');
  }

  /** Stops the generation; resolves when the worker is idle (generate() has then settled). */
  async stop() {
    if (!this._worker) return { frames: 0 };
    return this._call('stop');
  }

  /**
   * The generator's state after the last frame delivered: pass it as `checkpoint` to generate()
   * (here or in another session with the same model) to continue bit for bit.
   * @returns {Promise<Uint8Array>}
   */
  async checkpoint() {
    const bytes = await this._call('checkpoint');
    return new Uint8Array(bytes);
  }

  /** Timing figures of the model: {frames, unet_calls, seconds: {text, unet, scheduler, decode}}. */
  async stats() {
    return this._call('stats');
  }

  /** Ends the worker (and frees the model); init() starts a new one. */
  terminate() {
    if (this._worker) this._worker.terminate();
    this._worker = null;
    this._failAll(new Error('terminated'));
    this.ready = null;
  }
}

function safeCall(fn, arg) {
  try {
    fn(arg);
  } catch (e) {
    console.error(e);
  }
}

let shared = null;
function defaultGenerator() {
  if (!shared) shared = new FifoGenerator();
  return shared;
}

/** See FifoGenerator#init. */
export function init(options) {
  return defaultGenerator().init(options);
}
/** See FifoGenerator#generate. */
export function generate(options, onFrame) {
  return defaultGenerator().generate(options, onFrame);
}
/** See FifoGenerator#pause. */
export function pause() {
  return defaultGenerator().pause();
}
/** See FifoGenerator#resume. */
export function resume() {
  return defaultGenerator().resume();
}
/** See FifoGenerator#stop. */
export function stop() {
  return defaultGenerator().stop();
}
/** See FifoGenerator#checkpoint. */
export function checkpoint() {
  return defaultGenerator().checkpoint();
}
/** See FifoGenerator#stats. */
export function stats() {
  return defaultGenerator().stats();
}
