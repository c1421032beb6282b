#!/usr/bin/env bash
# Builds the browser page into web/dist/ (a static site: serve it with any static server, e.g.
# `python3 -m http.server -d web/dist`):
#   dist/index.html, app.js, fifo.js, worker.js, export.js, style.css   (from web/www/)
#   dist/pkg/fifo_web.js + fifo_web_bg.wasm                              (fifo-web via wasm-bindgen + wasm-opt)
#   dist/vendor/                                                         (muxer and GIF encoder from npm)
#   dist/models/shapes-t2v-tiny/ + files.json                            (the model package, with sizes and sha256)
# Idempotent; a warm rebuild only redoes what changed. Environment:
#   FIFO_WASM_OPT=0      skip wasm-opt (faster builds while iterating; larger wasm)
#   FIFO_WEB_PROFILE=dev build the wasm in the dev profile (debug; much slower in the browser)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
web=$root/web
dist=$web/dist
step() { printf '\n-- web: %s\n' "$*"; }

# One build at a time (a second one waits): they share dist/ and its staging folder.
mkdir -p "$dist"
if command -v flock >/dev/null; then
  exec 9>"$dist/.build.lock"
  flock 9
fi

profile=${FIFO_WEB_PROFILE:-release}
case "$profile" in
  release) cargo_profile=(--release); profile_dir=release ;;
  dev) cargo_profile=(); profile_dir=debug ;;
  *) echo "FIFO_WEB_PROFILE must be release or dev, not '$profile'" >&2; exit 2 ;;
esac

step "fifo-web for wasm32-unknown-unknown ($profile)"
rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
cargo build "${cargo_profile[@]}" --locked --target wasm32-unknown-unknown -p fifo-web
target_dir=${CARGO_TARGET_DIR:-$root/target}
wasm_in=$target_dir/wasm32-unknown-unknown/$profile_dir/fifo_web.wasm
[ -f "$wasm_in" ] || { echo "build.sh: $wasm_in is missing after the build" >&2; exit 1; }

step "wasm-bindgen (the CLI must match the wasm-bindgen crate in Cargo.lock)"
wb_version=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
[ -n "$wb_version" ] || { echo "build.sh: no wasm-bindgen in Cargo.lock" >&2; exit 1; }
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$wb_version" ]; then
  echo "installing wasm-bindgen-cli $wb_version (found '${have:-none}'; about 6 min on 2 cores)"
  # Not --locked: the CLI's own lock file does not build with this toolchain.
  cargo install wasm-bindgen-cli --version "$wb_version" --force
fi
staging=$dist/.staging
rm -rf "$staging"
mkdir -p "$staging" "$dist/pkg"
wasm-bindgen --target web --no-typescript --out-dir "$staging" "$wasm_in"

step "npm packages (pinned in web/package-lock.json)"
lock_hash=$(sha256sum "$web/package-lock.json" | awk '{ print $1 }')
if [ "$(cat "$web/node_modules/.fifo-lock-hash" 2>/dev/null || true)" != "$lock_hash" ]; then
  (cd "$web" && npm ci --no-audit --no-fund)
  echo "$lock_hash" > "$web/node_modules/.fifo-lock-hash"
fi

step "wasm-opt (binaryen from npm; Debian's binaryen breaks wasm-bindgen output)"
bg=fifo_web_bg.wasm
in_hash="$(sha256sum "$staging/$bg" | awk '{ print $1 }') opt=${FIFO_WASM_OPT:-1}"
if [ -f "$dist/pkg/$bg" ] && [ "$(cat "$dist/pkg/.input-hash" 2>/dev/null || true)" = "$in_hash" ]; then
  echo "unchanged since the last build; keeping dist/pkg/$bg"
else
  rm -f "$dist/pkg/.input-hash"
  if [ "${FIFO_WASM_OPT:-1}" = 0 ]; then
    cp "$staging/$bg" "$dist/pkg/$bg"
  else
    # The features rustc 1.95 emits for wasm32-unknown-unknown by default (wasm-opt refuses the
    # module without them): bulk memory, non-trapping float-to-int, sign extension, mutable
    # globals, multi-value and reference types; plus SIMD128, which .cargo/config.toml turns on.
    "$web/node_modules/.bin/wasm-opt" -O3 \
      --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-mutable-globals --enable-multivalue --enable-reference-types --enable-simd \
      "$staging/$bg" -o "$dist/pkg/$bg.tmp"
    mv "$dist/pkg/$bg.tmp" "$dist/pkg/$bg"
  fi
  echo "$in_hash" > "$dist/pkg/.input-hash"
fi
cp "$staging/fifo_web.js" "$dist/pkg/fifo_web.js"
rm -rf "$staging"
raw=$(wc -c < "$dist/pkg/$bg")
gz=$(gzip -9 -c "$dist/pkg/$bg" | wc -c)
before=$(wc -c < "$wasm_in")
awk -v raw="$raw" -v gz="$gz" -v before="$before" 'BEGIN {
  printf "wasm: %d bytes (%.2f MB) raw, %d bytes (%.2f MB) gzipped; %.2f MB before wasm-bindgen and wasm-opt\n",
    raw, raw / 1e6, gz, gz / 1e6, before / 1e6 }'
if [ "$gz" -gt 3000000 ]; then
  echo "warning: the gzipped wasm is over the 3 MB goal" >&2
fi

step "page, vendor modules, model package"
# The page: a plain copy of web/www (files no longer in www are removed from dist).
for f in "$dist"/*; do
  name=$(basename "$f")
  case "$name" in pkg | vendor | models | artifacts) continue ;; esac
  [ -e "$web/www/$name" ] || rm -rf "$f"
done
cp -R "$web/www/." "$dist/"
mkdir -p "$dist/vendor"
cp "$web/node_modules/mediabunny/dist/bundles/mediabunny.min.mjs" "$dist/vendor/mediabunny.min.mjs"
cp "$web/node_modules/mediabunny/LICENSE" "$dist/vendor/mediabunny.LICENSE"
cp "$web/node_modules/gifenc/dist/gifenc.esm.js" "$dist/vendor/gifenc.esm.js"
cp "$web/node_modules/gifenc/LICENSE.md" "$dist/vendor/gifenc.LICENSE.md"

model=shapes-t2v-tiny
src=$root/models/$model
dst=$dist/models/$model
mkdir -p "$dst"
for f in "$dst"/*; do
  [ -e "$f" ] || continue
  name=$(basename "$f")
  [ "$name" = files.json ] || [ -e "$src/$name" ] || rm -f "$f"
done
for f in "$src"/*; do
  [ -f "$f" ] || continue
  name=$(basename "$f")
  cmp -s "$f" "$dst/$name" || cp "$f" "$dst/$name"
done
# files.json: every file of the package with size and sha256; the page fetches what model.json
# needs from this list and keys its Cache Storage copy by the hash, so a new model invalidates.
node --input-type=module - "$dst" <<'EOF'
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
const dir = process.argv[2];
const files = readdirSync(dir)
  .filter((name) => name !== 'files.json' && statSync(join(dir, name)).isFile())
  .sort()
  .map((name) => {
    const bytes = readFileSync(join(dir, name));
    return { name, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
  });
writeFileSync(join(dir, 'files.json'), JSON.stringify({ format: 'fifo-files/1', files }, null, 1) + '\n');
const total = files.reduce((s, f) => s + f.size, 0);
console.log(`model package: ${files.length} files, ${(total / 1048576).toFixed(1)} MiB, files.json written`);
EOF

printf '\nweb/dist is ready: python3 -m http.server -d web/dist 8000, then open http://localhost:8000/\n'
