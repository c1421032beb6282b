// Encodes generated frames into a file: WebM or MP4 through WebCodecs (VideoEncoder, used by the
// Mediabunny muxer in vendor/), or an animated GIF (gifenc in vendor/) when WebCodecs cannot.
// The vendor modules are only loaded when a download is asked for.

/**
 * @param {{width: number, height: number, rgba: Uint8ClampedArray}[]} frames
 * @param {object} options
 * @param {'webm'|'mp4'|'gif'} options.format
 * @param {number} options.fps
 * @param {number} [options.scale] integer upscaling (nearest neighbour), default 4
 * @param {(done: number, total: number) => void} [options.onProgress]
 * @returns {Promise<{blob: Blob, extension: string, codec: string, note: string|null}>}
 */
export async function encodeVideo(frames, options) {
  if (!frames.length) throw new Error('nothing to save yet: generate some frames first');
  const format = options.format || 'webm';
  const fps = Math.max(1, Number(options.fps) || 8);
  const scale = Math.max(1, Math.floor(options.scale || 4));
  if (format !== 'gif') {
    if (typeof VideoEncoder === 'undefined') {
      const gif = await encodeGif(frames, fps, scale, options.onProgress);
      return { ...gif, note: `This browser has no WebCodecs VideoEncoder, so the video was saved as an animated GIF instead of ${format.toUpperCase()}.` };
    }
    const mb = await import('./vendor/mediabunny.min.mjs');
    const width = frames[0].width * scale;
    const height = frames[0].height * scale;
    const candidates = format === 'mp4' ? ['avc', 'vp9', 'av1', 'hevc'] : ['vp9', 'vp8', 'av1'];
    const codec = await mb.getFirstEncodableVideoCodec(candidates, { width, height });
    if (!codec) {
      const gif = await encodeGif(frames, fps, scale, options.onProgress);
      return {
        ...gif,
        note: `This browser's VideoEncoder cannot encode ${candidates.join('/')} for ${format.toUpperCase()}, so the video was saved as an animated GIF.`,
      };
    }
    const canvas = makeCanvas(width, height);
    const ctx = canvas.getContext('2d');
    const output = new mb.Output({
      format: format === 'mp4' ? new mb.Mp4OutputFormat({ fastStart: 'in-memory' }) : new mb.WebMOutputFormat(),
      target: new mb.BufferTarget(),
    });
    const source = new mb.CanvasSource(canvas, { codec, quality: mb.QUALITY_VERY_HIGH, keyFrameInterval: 2 });
    output.addVideoTrack(source, { frameRate: fps });
    await output.start();
    for (let i = 0; i < frames.length; i++) {
      drawScaled(ctx, frames[i], scale);
      await source.add(i / fps, 1 / fps);
      if (options.onProgress) options.onProgress(i + 1, frames.length);
    }
    source.close();
    await output.finalize();
    const blob = new Blob([output.target.buffer], { type: format === 'mp4' ? 'video/mp4' : 'video/webm' });
    return { blob, extension: format, codec, note: null };
  }
  return { ...(await encodeGif(frames, fps, scale, options.onProgress)), note: null };
}

async function encodeGif(frames, fps, scale, onProgress) {
  const { GIFEncoder, quantize, applyPalette } = await import('./vendor/gifenc.esm.js');
  const width = frames[0].width * scale;
  const height = frames[0].height * scale;
  const canvas = makeCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const gif = GIFEncoder();
  const delay = Math.round(1000 / fps);
  for (let i = 0; i < frames.length; i++) {
    drawScaled(ctx, frames[i], scale);
    const { data } = ctx.getImageData(0, 0, width, height);
    const palette = quantize(data, 256);
    const index = applyPalette(data, palette);
    gif.writeFrame(index, width, height, { palette, delay, repeat: 0 });
    if (onProgress) onProgress(i + 1, frames.length);
    if (i % 8 === 7) await new Promise((r) => setTimeout(r, 0));
  }
  gif.finish();
  return { blob: new Blob([gif.bytes()], { type: 'image/gif' }), extension: 'gif', codec: 'gif' };
}

function makeCanvas(width, height) {
  if (typeof OffscreenCanvas !== 'undefined') return new OffscreenCanvas(width, height);
  const c = document.createElement('canvas');
  c.width = width;
  c.height = height;
  return c;
}

const smallCanvases = new Map();
function drawScaled(ctx, frame, scale) {
  const key = `${frame.width}x${frame.height}`;
  let small = smallCanvases.get(key);
  if (!small) {
    small = makeCanvas(frame.width, frame.height);
    smallCanvases.set(key, small);
  }
  small.getContext('2d').putImageData(new ImageData(frame.rgba, frame.width, frame.height), 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(small, 0, 0, frame.width * scale, frame.height * scale);
}
