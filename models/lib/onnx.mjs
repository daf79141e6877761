// A small ONNX graph builder: nodes, float initializers and the model bytes.
// Names are generated from a counter, so the same build steps give the same bytes every run.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { onnx } = require('onnx-proto');

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;
const A = onnx.AttributeProto.AttributeType;

export const OPSET = 13;

function attribute(name, value) {
  if (typeof value === 'string') return { name, type: A.STRING, s: Buffer.from(value, 'utf8') };
  if (typeof value === 'number') {
    return Number.isInteger(value) ? { name, type: A.INT, i: value } : { name, type: A.FLOAT, f: value };
  }
  if (Array.isArray(value)) return { name, type: A.INTS, ints: value };
  if (value && typeof value === 'object' && 'float' in value) return { name, type: A.FLOAT, f: value.float };
  throw new Error(`unsupported attribute ${name}`);
}

export class GraphBuilder {
  constructor(name) {
    this.name = name;
    this.nodes = [];
    this.initializers = [];
    this.inputs = [];
    this.outputs = [];
    this.counter = 0;
  }

  /** A fresh tensor name: prefix + running number, stable across runs. */
  fresh(prefix) {
    this.counter += 1;
    return `${prefix}_${this.counter}`;
  }

  input(name, dims) {
    this.inputs.push(valueInfo(name, dims));
    return name;
  }

  output(name, dims) {
    this.outputs.push(valueInfo(name, dims));
    return name;
  }

  /** A float32 initializer (dims, Float32Array). */
  constant(prefix, dims, values) {
    const data = values instanceof Float32Array ? values : Float32Array.from(values);
    const expected = dims.reduce((a, b) => a * b, 1);
    if (data.length !== expected) throw new Error(`${prefix}: ${data.length} values for dims ${dims.join('x')}`);
    const name = this.fresh(prefix);
    this.initializers.push({
      name,
      dims,
      dataType: FLOAT,
      rawData: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)),
    });
    return name;
  }

  constantInt64(prefix, values) {
    const name = this.fresh(prefix);
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    this.initializers.push({ name, dims: [values.length], dataType: INT64, rawData: new Uint8Array(data.buffer) });
    return name;
  }

  /**
   * Adds a node. `attrs` values: integers become INT, arrays INTS, strings STRING;
   * wrap a float as { float: x } to force FLOAT. Returns the output names.
   */
  node(opType, inputs, attrs = {}, outputCount = 1, outputNames = undefined) {
    const outputs = outputNames ?? Array.from({ length: outputCount }, () => this.fresh(opType.toLowerCase()));
    const attribute_ = Object.keys(attrs).map((k) => attribute(k, attrs[k]));
    this.nodes.push({ name: this.fresh(`n_${opType}`), opType, input: inputs, output: outputs, attribute: attribute_ });
    return outputs;
  }

  /** Shorthand for single-output nodes. */
  op(opType, inputs, attrs = {}, outputName = undefined) {
    return this.node(opType, inputs, attrs, 1, outputName ? [outputName] : undefined)[0];
  }

  toBytes({ docString, producerVersion }) {
    const model = onnx.ModelProto.create({
      irVersion: 7,
      producerName: 'avatar-models',
      producerVersion,
      docString,
      opsetImport: [{ domain: '', version: OPSET }],
      graph: {
        name: this.name,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
    return Buffer.from(onnx.ModelProto.encode(model).finish());
  }
}

function valueInfo(name, dims) {
  return {
    name,
    type: {
      tensorType: {
        elemType: FLOAT,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}
