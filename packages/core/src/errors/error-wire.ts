import {
  DeviceUnavailableError,
  DisposedError,
  InferenceError,
  InvalidArgumentError,
  ModelFolderError,
  TensorInputError,
} from './errors.js';
import { StreamDiffusionError } from './streamdiffusion-error.js';

/** An error as it crosses a thread boundary: its class name and own fields. */
export interface WireError {
  readonly name: string;
  readonly message: string;
  readonly fields: Readonly<Record<string, unknown>>;
  readonly stack?: string;
}

/** Flattens an error so `postMessage` keeps its class and fields. */
export function errorToWire(error: unknown): WireError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error), fields: {} };
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(error)) {
    if (typeof value !== 'function' && typeof value !== 'object') fields[key] = value;
  }
  return { name: error.name, message: error.message, fields, ...(error.stack === undefined ? {} : { stack: error.stack }) };
}

function text(fields: Readonly<Record<string, unknown>>, key: string): string {
  const value = fields[key];
  return typeof value === 'string' ? value : '';
}

/** Rebuilds the typed error a worker threw, so callers can catch it by class. */
export function errorFromWire(wire: WireError): Error {
  const { fields } = wire;
  let error: Error;
  switch (wire.name) {
    case 'DeviceUnavailableError':
      error = new DeviceUnavailableError({
        device: text(fields, 'device'),
        missing: text(fields, 'missing') as DeviceUnavailableError['missing'],
        message: wire.message,
      });
      break;
    case 'TensorInputError':
      error = new TensorInputError({
        model: text(fields, 'model'),
        input: text(fields, 'input'),
        expected: text(fields, 'expected'),
        actual: text(fields, 'actual'),
        message: wire.message,
      });
      break;
    case 'ModelFolderError':
      error = new ModelFolderError({
        problem: text(fields, 'problem') as ModelFolderError['problem'],
        path: text(fields, 'path'),
        message: wire.message,
      });
      break;
    case 'InferenceError':
      error = new InferenceError({ model: text(fields, 'model'), message: '' });
      break;
    case 'DisposedError':
      error = new DisposedError('');
      break;
    case 'InvalidArgumentError':
      error = new InvalidArgumentError({ field: text(fields, 'field'), value: undefined, expected: '' });
      break;
    default:
      error = new StreamDiffusionError({ code: text(fields, 'code') || 'worker', message: wire.message });
      error.name = wire.name;
  }
  // Constructors may decorate their message; the worker's text is the one to keep.
  error.message = wire.message;
  if (wire.stack !== undefined) error.stack = `${error.name}: ${error.message}\n    (in the inference worker)\n${wire.stack.split('\n').slice(1).join('\n')}`;
  return error;
}
