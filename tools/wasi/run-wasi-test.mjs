// Runs a Rust test binary built for wasm32-wasip1 under Node's WASI, with the repository
// preopened at its own path (tests find fixtures through CARGO_MANIFEST_DIR).
// Usage: node tools/wasi/run-wasi-test.mjs REPO_ROOT TEST.wasm [test args...]
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';

const [root, wasmPath, ...args] = process.argv.slice(2);
const wasi = new WASI({
  version: 'preview1',
  args: [wasmPath, ...args],
  env: { RUST_BACKTRACE: '1' },
  preopens: { [root]: root },
  returnOnExit: true,
});
const module = await WebAssembly.compile(await readFile(wasmPath));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
