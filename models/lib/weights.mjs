// Reads a TensorFlow.js weights manifest (JSON) and its .bin shards into named float32 tensors.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const BYTES = { float32: 4, int32: 4, uint8: 1, uint16: 2, float16: 2 };

/**
 * @returns {{ tensors: Map<string, { shape: number[], data: Float32Array }>, files: string[] }}
 *   files: the manifest and shard file names read (relative to `dir`).
 */
export function readWeights(dir, manifestName) {
  const manifest = JSON.parse(readFileSync(join(dir, manifestName), 'utf8'));
  const tensors = new Map();
  const files = [manifestName];
  for (const group of manifest) {
    const shards = group.paths.map((p) => {
      files.push(p);
      return readFileSync(join(dir, p));
    });
    const buffer = Buffer.concat(shards);
    let offset = 0;
    for (const spec of group.weights) {
      const size = spec.shape.reduce((a, b) => a * b, 1);
      const q = spec.quantization;
      const storedType = q ? q.dtype : spec.dtype;
      const bytes = BYTES[storedType];
      if (!bytes) throw new Error(`${spec.name}: unsupported stored dtype ${storedType}`);
      const byteLength = size * bytes;
      const view = buffer.subarray(offset, offset + byteLength);
      offset += byteLength;
      tensors.set(spec.name, { shape: spec.shape, dtype: spec.dtype, data: decode(spec, view, size) });
    }
    if (offset !== buffer.length) throw new Error(`${manifestName}: ${buffer.length - offset} bytes left over`);
  }
  return { tensors, files };
}

function decode(spec, view, size) {
  const out = new Float32Array(size);
  const q = spec.quantization;
  if (q) {
    if (q.dtype === 'float16') throw new Error(`${spec.name}: float16 weights are not supported`);
    const dv = new DataView(view.buffer, view.byteOffset, view.byteLength);
    // affine dequantisation, the same arithmetic TensorFlow.js uses: value = q * scale + min
    for (let i = 0; i < size; i += 1) {
      const v = q.dtype === 'uint8' ? dv.getUint8(i) : dv.getUint16(i * 2, true);
      out[i] = v * q.scale + q.min;
    }
    return out;
  }
  const dv = new DataView(view.buffer, view.byteOffset, view.byteLength);
  for (let i = 0; i < size; i += 1) {
    out[i] = spec.dtype === 'int32' ? dv.getInt32(i * 4, true) : dv.getFloat32(i * 4, true);
  }
  return out;
}

export function take(tensors, name, rank) {
  const t = tensors.get(name);
  if (!t) throw new Error(`weight ${name} is missing`);
  if (rank !== undefined && t.shape.length !== rank) throw new Error(`weight ${name} has rank ${t.shape.length}, expected ${rank}`);
  return t;
}

/** TF conv filter [kh, kw, in, out] -> ONNX [out, in, kh, kw]. */
export function hwioToOihw({ shape, data }) {
  const [kh, kw, ci, co] = shape;
  const out = new Float32Array(data.length);
  for (let y = 0; y < kh; y += 1)
    for (let x = 0; x < kw; x += 1)
      for (let i = 0; i < ci; i += 1)
        for (let o = 0; o < co; o += 1) out[((o * ci + i) * kh + y) * kw + x] = data[((y * kw + x) * ci + i) * co + o];
  return { dims: [co, ci, kh, kw], data: out };
}

/** TF depthwise filter [kh, kw, C, 1] -> ONNX grouped conv weight [C, 1, kh, kw]. */
export function depthwiseToOihw({ shape, data }) {
  const [kh, kw, c, m] = shape;
  if (m !== 1) throw new Error('depthwise multiplier other than 1 is not supported');
  const out = new Float32Array(data.length);
  for (let y = 0; y < kh; y += 1)
    for (let x = 0; x < kw; x += 1)
      for (let i = 0; i < c; i += 1) out[(i * kh + y) * kw + x] = data[(y * kw + x) * c + i];
  return { dims: [c, 1, kh, kw], data: out };
}
