// What web/tests/e2e.mjs and web/bench/run.mjs share: the static server for the page and the
// Chromium flags.

import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

// The flags that web/webdriver.json gives chromedriver (the wasm-bindgen browser tests), read
// from there so that the three cannot drift apart; Playwright adds its own headless flag.
const WEBDRIVER = join(dirname(fileURLToPath(import.meta.url)), '..', 'webdriver.json');
export const CHROMIUM_ARGS = JSON.parse(readFileSync(WEBDRIVER, 'utf8'))['goog:chromeOptions'].args
  .filter((a) => !a.startsWith('--headless'));

export const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.gif': 'image/gif',
  '.mp4': 'video/mp4',
  '.webm': 'video/webm',
  '.md': 'text/plain; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

// COOP + COEP make the page crossOriginIsolated (SharedArrayBuffer for wasm threads, precise
// timers), and under COEP every file needs CORP. no-store: each run loads the files on disk,
// never the browser's HTTP cache (the page's own Cache Storage is unaffected).
const HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cache-Control': 'no-store',
};

const inside = (file, dir) => file === dir || file.startsWith(dir + sep);

/**
 * Serves folders over HTTP on 127.0.0.1 at a free port; resolves to the started http.Server.
 * mounts: [{ prefix, dir, deny }], tried in order: the first whose prefix starts the URL path
 * serves it from dir (so put '/' last); deny: folders under dir that answer 404.
 */
export function serveStatic(mounts) {
  mounts = mounts.map(({ prefix, dir, deny = [] }) => ({ prefix, dir: resolve(dir), deny: deny.map((d) => resolve(d)) }));
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const notFound = () => res.writeHead(404, { 'Content-Type': 'text/plain' }).end(`not found: ${path}`);
    const mount = mounts.find((m) => path.startsWith(m.prefix));
    if (!mount) return notFound();
    let file = normalize(join(mount.dir, path.slice(mount.prefix.length)));
    if (!inside(file, mount.dir)) return res.writeHead(403).end(); // `..` must not leave the folder
    if (existsSync(file) && statSync(file).isDirectory()) file = join(file, 'index.html');
    if (!existsSync(file) || mount.deny.some((d) => inside(file, d))) return notFound();
    res.writeHead(200, {
      'Content-Type': MIME[extname(file)] || 'application/octet-stream',
      'Content-Length': statSync(file).size,
      ...HEADERS,
    });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}
