import { TensorInputError } from '../errors/errors.js';
import type { TensorType } from './dtypes.js';

/** One declared input or output of a model: a dim is a number when fixed, a name when symbolic. */
export interface ValueSignature {
  readonly name: string;
  /** The element type, or `other` for types we never feed (strings, sequences, maps). */
  readonly type: TensorType | 'other';
  readonly shape: readonly (number | string)[];
}

/** What a loaded model declares: its inputs and outputs, in order. */
export interface ModelSignature {
  readonly inputs: readonly ValueSignature[];
  readonly outputs: readonly ValueSignature[];
}

/** What we know of an input about to be fed, wherever its data lives. */
export interface InputDescription {
  readonly type: TensorType;
  readonly dims: readonly number[];
  /** True when the tensor is already a model output kept in the worker (or on the GPU): it is never converted. */
  readonly resident: boolean;
}

/** Renders `float16 [batch, 4, 64, 64]`. */
export function describeSignature(value: Pick<ValueSignature, 'type' | 'shape'>): string {
  return `${value.type} [${value.shape.join(', ')}]`;
}

function describeInput(input: InputDescription): string {
  return `${input.type} [${input.dims.join(', ')}]${input.resident ? ' (a model output kept on the device)' : ''}`;
}

/** Host data of the first type is converted to the second instead of failing: the meaning is kept. */
const CONVERTIBLE = new Set(['float32>float16', 'float16>float32', 'int32>int64', 'int64>int32']);

function canConvert(from: TensorType, to: TensorType): boolean {
  return CONVERTIBLE.has(`${from}>${to}`);
}

/**
 * Checks a run's inputs against what the model declares and returns, per input, the element type
 * it must be fed as (host fp32 data is cast to a declared fp16 input, int32 to int64 and back).
 * Symbolic dims must bind to one size across all inputs of one run.
 * Throws {@link TensorInputError} naming the input, the expected and the actual type and dims.
 */
export function checkInputs(
  model: string,
  signature: ModelSignature,
  inputs: Readonly<Record<string, InputDescription>>,
): Record<string, TensorType> {
  const declared = new Map(signature.inputs.map((value) => [value.name, value]));
  for (const name of Object.keys(inputs)) {
    if (!declared.has(name)) {
      throw new TensorInputError({
        model,
        input: name,
        expected: `one of the declared inputs [${[...declared.keys()].join(', ')}]`,
        actual: `an input named "${name}"`,
      });
    }
  }
  const bound = new Map<string, { size: number; input: string }>();
  const feedTypes: Record<string, TensorType> = {};
  for (const value of signature.inputs) {
    const input = inputs[value.name];
    if (input === undefined) {
      throw new TensorInputError({ model, input: value.name, expected: describeSignature(value), actual: 'no tensor' });
    }
    const mismatch = (detail?: string): TensorInputError =>
      new TensorInputError({
        model,
        input: value.name,
        expected: describeSignature(value),
        actual: describeInput(input),
        ...(detail === undefined
          ? {}
          : { message: `model "${model}", input "${value.name}": expected ${describeSignature(value)}, got ${describeInput(input)}: ${detail}` }),
      });
    if (value.type === 'other') throw mismatch('this input type cannot be fed from JavaScript');
    if (input.type !== value.type && (input.resident || !canConvert(input.type, value.type))) throw mismatch();
    if (value.shape.length > 0 && value.shape.length !== input.dims.length) throw mismatch('the rank differs');
    for (const [axis, dim] of value.shape.entries()) {
      const size = input.dims[axis];
      if (typeof dim === 'number' && dim >= 0) {
        if (size !== dim) throw mismatch(`dim ${axis} must be ${dim}`);
        continue;
      }
      if (typeof dim !== 'string' || dim === '' || size === undefined) continue;
      const previous = bound.get(dim);
      if (previous === undefined) bound.set(dim, { size, input: value.name });
      else if (previous.size !== size) {
        throw mismatch(`dim ${axis} ("${dim}") is ${previous.size} in input "${previous.input}"`);
      }
    }
    feedTypes[value.name] = value.type;
  }
  return feedTypes;
}
