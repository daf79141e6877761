// The face-api networks, rebuilt as ONNX graphs (NCHW, float32) from their TensorFlow.js weights.
// Each layer mirrors the TensorFlow.js forward pass of @vladmandic/face-api op for op, so the
// outputs agree with the original to float rounding (checked by packages/face/src/models/parity.test.ts).
import { GraphBuilder } from './onnx.mjs';
import { depthwiseToOihw, hwioToOihw, take } from './weights.mjs';

// TensorFlow 'same' padding puts the odd pixel at the end, which is ONNX SAME_UPPER.
const SAME = { auto_pad: 'SAME_UPPER' };

function conv(g, x, prefix, filter, bias, { strides = [1, 1], pads, group } = {}) {
  const w = g.constant(`${prefix}_w`, filter.dims, filter.data);
  const inputs = bias ? [x, w, g.constant(`${prefix}_b`, [bias.length], bias)] : [x, w];
  const attrs = { kernel_shape: filter.dims.slice(2), strides, ...(pads ? { pads } : SAME) };
  if (group) attrs.group = group;
  return g.op('Conv', inputs, attrs);
}

function relu6(g, x) {
  return g.op('Clip', [x, g.constant('zero', [], [0]), g.constant('six', [], [6])]);
}

function leaky(g, x) {
  // face-api computes relu(x - 0.1x) + 0.1x, which is LeakyRelu with alpha 0.1
  return g.op('LeakyRelu', [x], { alpha: 0.10000000149011612 });
}

function maxPool(g, x, stride) {
  return g.op('MaxPool', [x], { kernel_shape: [2, 2], strides: [stride, stride], ...SAME });
}

/** Depthwise conv (no bias) then pointwise conv with the block's bias, as tf.separableConv2d + add. */
function separable(g, t, prefix, { stride = 1, pads } = {}) {
  const dw = depthwiseToOihw(take(t, `${prefix}/depthwise_filter`, 4));
  const pw = hwioToOihw(take(t, `${prefix}/pointwise_filter`, 4));
  const bias = take(t, `${prefix}/bias`, 1).data;
  return (x) => {
    const d = conv(g, x, `${prefix}/dw`, dw, undefined, { strides: [stride, stride], pads, group: dw.dims[0] });
    return conv(g, d, `${prefix}/pw`, pw, bias);
  };
}

// ---- tiny face detector (a Tiny YOLO v2 with separable convolutions) ---------------------------
export const TINY_ANCHORS = [
  [1.603231, 2.094468],
  [6.041143, 7.080126],
  [2.882459, 3.518061],
  [4.266906, 5.178857],
  [9.041765, 10.66308],
];

function buildTinyFaceDetector(t) {
  const g = new GraphBuilder('tiny_face_detector');
  let x = g.input('input', [1, 3, 'height', 'width']);
  // conv0 is a plain 3x3 conv without padding ('valid'), then leaky
  x = leaky(g, conv(g, x, 'conv0', hwioToOihw(take(t, 'conv0/filters', 4)), take(t, 'conv0/bias', 1).data, { pads: [0, 0, 0, 0] }));
  x = maxPool(g, x, 2);
  for (let i = 1; i <= 5; i += 1) {
    // face-api pads by one pixel, then runs the separable conv 'valid'
    x = leaky(g, separable(g, t, `conv${i}`, { pads: [1, 1, 1, 1] })(x));
    x = maxPool(g, x, i < 5 ? 2 : 1);
  }
  const w8 = hwioToOihw(take(t, 'conv8/filters', 4));
  const out = g.op('Conv', [x, g.constant('conv8_w', w8.dims, w8.data), g.constant('conv8_b', [w8.dims[0]], take(t, 'conv8/bias', 1).data)], {
    kernel_shape: [1, 1],
    pads: [0, 0, 0, 0],
  }, 'grid');
  g.output(out, [1, 25, 'grid_h', 'grid_w']);
  return g;
}

// ---- 68-point landmark nets (dense blocks of separable convs, then one fully connected layer) ---
function denseBlock(g, t, x, prefix, convCount, first) {
  let out1;
  if (first) {
    const w = hwioToOihw(take(t, `${prefix}/conv0/filters`, 4));
    out1 = g.op('Relu', [conv(g, x, `${prefix}/conv0`, w, take(t, `${prefix}/conv0/bias`, 1).data, { strides: [2, 2] })]);
  } else {
    out1 = g.op('Relu', [separable(g, t, `${prefix}/conv0`, { stride: 2 })(x)]);
  }
  // each following conv sees relu(sum of all earlier outputs); the block returns relu(sum of all)
  const outs = [out1];
  let input = out1;
  for (let i = 1; i < convCount; i += 1) {
    outs.push(separable(g, t, `${prefix}/conv${i}`)(input));
    input = g.op('Relu', [sumLikeFaceApi(g, outs)]);
  }
  return input;
}

/** out1 + (out2 + (out3 + out4)): the association order face-api adds in. */
function sumLikeFaceApi(g, outs) {
  let acc = outs[outs.length - 1];
  for (let i = outs.length - 2; i >= 0; i -= 1) acc = g.op('Add', [outs[i], acc]);
  return acc;
}

function buildLandmarks(t, { name, blocks, pool }) {
  const g = new GraphBuilder(name);
  let x = g.input('input', [1, 3, 112, 112]);
  for (let b = 0; b < blocks; b += 1) x = denseBlock(g, t, x, `dense${b}`, blocks === 4 ? 4 : 3, b === 0);
  x = g.op('AveragePool', [x], { kernel_shape: [pool, pool], strides: [2, 2], pads: [0, 0, 0, 0] });
  x = g.op('Flatten', [x], { axis: 1 });
  const fcW = take(t, 'fc/weights', 2);
  const fcB = take(t, 'fc/bias', 1);
  const out = g.op('Gemm', [x, g.constant('fc_w', fcW.shape, fcW.data), g.constant('fc_b', fcB.shape, fcB.data)], {}, 'landmarks');
  g.output(out, [1, 136]);
  return g;
}

// ---- SSD MobileNet v1 --------------------------------------------------------------------------
const BN_EPSILON = 0.0010000000474974513;

function pointwiseLayer(g, t, x, prefix, stride) {
  const w = hwioToOihw(take(t, `${prefix}/weights`, 4));
  return relu6(g, conv(g, x, prefix, w, take(t, `${prefix}/convolution_bn_offset`, 1).data, { strides: [stride, stride] }));
}

function depthwiseLayer(g, t, x, prefix, stride) {
  const w = depthwiseToOihw(take(t, `${prefix}/depthwise_weights`, 4));
  const d = conv(g, x, prefix, w, undefined, { strides: [stride, stride], group: w.dims[0] });
  const bn = (n) => {
    const v = take(t, `${prefix}/BatchNorm/${n}`, 1);
    return g.constant(`${prefix}_${n}`, v.shape, v.data);
  };
  const y = g.op('BatchNormalization', [d, bn('gamma'), bn('beta'), bn('moving_mean'), bn('moving_variance')], { epsilon: BN_EPSILON });
  return relu6(g, y);
}

function buildSsd(t) {
  const g = new GraphBuilder('ssd_mobilenetv1');
  let x = g.input('input', [1, 3, 512, 512]);
  x = pointwiseLayer(g, t, x, 'MobilenetV1/Conv2d_0_pointwise', 2);
  let conv11;
  for (let i = 1; i <= 13; i += 1) {
    const stride = [2, 4, 6, 12].includes(i) ? 2 : 1;
    x = depthwiseLayer(g, t, x, `MobilenetV1/Conv2d_${i}_depthwise`, stride);
    x = pointwiseLayer(g, t, x, `MobilenetV1/Conv2d_${i}_pointwise`, 1);
    if (i === 11) conv11 = x;
  }
  const p = [];
  let y = x;
  for (let i = 0; i < 8; i += 1) {
    y = pointwiseLayer(g, t, y, `Prediction/Conv2d_${i}_pointwise`, i % 2 === 1 ? 2 : 1);
    p.push(y);
  }
  const sources = [conv11, x, p[1], p[3], p[5], p[7]];
  const boxParts = [];
  const classParts = [];
  sources.forEach((src, i) => {
    const head = (kind, per) => {
      const w = hwioToOihw(take(t, `Prediction/BoxPredictor_${i}/${kind}/weights`, 4));
      const c = conv(g, src, `BoxPredictor_${i}/${kind}`, w, take(t, `Prediction/BoxPredictor_${i}/${kind}/biases`, 1).data);
      // TensorFlow reshapes NHWC, so go back to NHWC before flattening the anchors
      const nhwc = g.op('Transpose', [c], { perm: [0, 2, 3, 1] });
      return g.op('Reshape', [nhwc, g.constantInt64('shape', [1, -1, per])]);
    };
    boxParts.push(head('BoxEncodingPredictor', 4));
    classParts.push(head('ClassPredictor', 3));
  });
  const enc = g.op('Concat', boxParts, { axis: 1 });
  const cls = g.op('Concat', classParts, { axis: 1 });

  const anchors = take(t, 'Output/extra_dim', 3);
  const n = anchors.shape[1];
  // anchor sizes and centres, in float32 like the TensorFlow.js graph computes them
  const size = new Float32Array(n * 2);
  const centre = new Float32Array(n * 2);
  for (let i = 0; i < n; i += 1) {
    for (let k = 0; k < 2; k += 1) {
      const a0 = anchors.data[i * 4 + k];
      const a1 = anchors.data[i * 4 + k + 2];
      const s = Math.fround(a1 - a0);
      size[i * 2 + k] = s;
      centre[i * 2 + k] = Math.fround(a0 + Math.fround(s / 2));
    }
  }
  const flat = g.op('Reshape', [enc, g.constantInt64('shape', [n, 4])]);
  const starts = (a) => g.constantInt64('starts', [a]);
  const ends = (a) => g.constantInt64('ends', [a]);
  const axis1 = () => g.constantInt64('axes', [1]);
  const yx = g.op('Slice', [flat, starts(0), ends(2), axis1()]);
  const hw = g.op('Slice', [flat, starts(2), ends(4), axis1()]);
  const sizeC = g.constant('anchor_size', [n, 2], size);
  const ctr = g.op('Add', [g.op('Mul', [g.op('Div', [yx, g.constant('ten', [], [10])]), sizeC]), g.constant('anchor_centre', [n, 2], centre)]);
  const half = g.op('Div', [g.op('Mul', [g.op('Exp', [g.op('Div', [hw, g.constant('five', [], [5])])]), sizeC]), g.constant('two', [], [2])]);
  const corners = g.op('Concat', [g.op('Sub', [ctr, half]), g.op('Add', [ctr, half])], { axis: 1 });
  const boxes = g.op('Reshape', [corners, g.constantInt64('shape', [1, n, 4])], {}, 'boxes');
  const faceLogit = g.op('Slice', [cls, g.constantInt64('starts', [1]), g.constantInt64('ends', [2]), g.constantInt64('axes', [2])]);
  const scores = g.op('Reshape', [g.op('Sigmoid', [faceLogit]), g.constantInt64('shape', [1, n])], {}, 'scores');
  g.output(boxes, [1, n, 4]);
  g.output(scores, [1, n]);
  return g;
}

/**
 * Every model the converter builds. `descriptor` is what the runtime loads the model with
 * (packages/face/src/models): preprocessing and output decoding.
 */
export const MODELS = [
  {
    name: 'tiny_face_detector',
    title: 'Tiny face detector (Tiny YOLO v2 with separable convolutions), 190 KB',
    sourceManifest: 'tiny_face_detector_model-weights_manifest.json',
    origin: 'trained by the face-api.js author on a custom dataset of about 14k images labelled with face boxes (face-api TUTORIAL.md).',
    build: buildTinyFaceDetector,
    inputs: [{ name: 'input', shape: [1, 3, 'height', 'width'] }],
    outputs: [{ name: 'grid', shape: [1, 25, 'height/32', 'width/32'] }],
    descriptor: {
      type: 'detector',
      input: {
        name: 'input',
        size: 416,
        layout: 'NCHW',
        channels: 'RGB',
        fit: 'pad-bottom-right',
        padValue: 0,
        mean: [117.001, 114.697, 97.404],
        std: [255, 255, 255],
      },
      decode: { kind: 'tiny-yolo-v2', output: 'grid', anchors: TINY_ANCHORS, iouThreshold: 0.4, minScore: 0.5 },
    },
    decodingNote:
      'grid [1, 25, S/32, S/32] for input size S (any multiple of 32): 5 anchors x (tx, ty, tw, th, objectness) per cell, channel = anchor*5 + k. ' +
      'score = sigmoid(objectness); centre = (cell + sigmoid(t)) / cells; size = exp(t) * anchor / cells; ' +
      'all relative to the zero-padded square (image padded right/bottom to max(width, height)); then NMS (IoU 0.4).',
  },
  {
    name: 'ssd_mobilenetv1',
    title: 'SSD MobileNet v1 face detector, 5.4 MB',
    sourceManifest: 'ssd_mobilenetv1_model-weights_manifest.json',
    origin: 'trained on the WIDER FACE dataset; the weights were provided by yeephycho (github.com/yeephycho/tensorflow-face-detection, see that repository for its terms), as face-api TUTORIAL.md states.',
    build: buildSsd,
    inputs: [{ name: 'input', shape: [1, 3, 512, 512] }],
    outputs: [
      { name: 'boxes', shape: [1, 5118, 4] },
      { name: 'scores', shape: [1, 5118] },
    ],
    descriptor: {
      type: 'detector',
      input: {
        name: 'input',
        size: 512,
        layout: 'NCHW',
        channels: 'RGB',
        fit: 'pad-bottom-right',
        padValue: 0,
        mean: [127.5, 127.5, 127.5],
        std: [127.5, 127.5, 127.5],
      },
      decode: { kind: 'ssd', boxes: 'boxes', scores: 'scores', boxFormat: 'yxyx', iouThreshold: 0.5, minScore: 0.5, clip: true },
    },
    decodingNote:
      'boxes [1, 5118, 4] = (ymin, xmin, ymax, xmax) relative to the zero-padded square, anchors already applied; ' +
      'scores [1, 5118] = face probability; clip boxes to [0, 1], keep scores > 0.5, then NMS (IoU 0.5).',
  },
  landmarkModel('face_landmark_68', '68-point face landmarks, 350 KB', { blocks: 4, pool: 7 }),
  landmarkModel('face_landmark_68_tiny', '68-point face landmarks, tiny variant, 80 KB', { blocks: 3, pool: 14 }),
];

/** The two 68-point landmark nets share input, output and decoding; they differ in depth. */
function landmarkModel(name, title, { blocks, pool }) {
  return {
    name,
    title,
    sourceManifest: `${name}_model-weights_manifest.json`,
    origin: 'trained by the face-api.js author on about 35k face images labelled with 68 landmark points (face-api TUTORIAL.md).',
    build: (t) => buildLandmarks(t, { name, blocks, pool }),
    inputs: [{ name: 'input', shape: [1, 3, 112, 112] }],
    outputs: [{ name: 'landmarks', shape: [1, 136] }],
    descriptor: {
      type: 'landmarks',
      input: {
        name: 'input',
        size: 112,
        layout: 'NCHW',
        channels: 'RGB',
        fit: 'pad-center',
        padValue: 0,
        mean: [122.782, 117.001, 104.298],
        std: [255, 255, 255],
      },
      decode: { kind: 'landmarks-68-normalized', output: 'landmarks' },
    },
    decodingNote:
      'landmarks [1, 136] = (x0, y0, x1, y1, ...) in 0..1 of the face crop padded (centred) to a square; ' +
      'pixel = value * side - padding + crop origin.',
  };
}
