/**
 * The built-in preprocessors by the names config files use. Nothing registers itself: this list and
 * a wrapper's own (`createControlNet({ preprocessors })`) are the whole set, and `preprocessorNamed`
 * is how a name from a config file becomes a definition.
 */
import { InvalidArgumentError } from '@streamdiffusion/core';
import { cannyPreprocessor } from './canny-preprocessor.js';
import { depthPreprocessor } from './depth-preprocessor.js';
import { externalPreprocessor } from './external-preprocessor.js';
import { feedbackPreprocessor } from './feedback-preprocessor.js';
import { lineartPreprocessor } from './lineart-preprocessor.js';
import { passthroughPreprocessor } from './passthrough-preprocessor.js';
import type { AnyPreprocessorDefinition } from './preprocessor.js';

/** Every preprocessor, by name. */
export const PREPROCESSORS = Object.freeze({
  canny: cannyPreprocessor,
  depth: depthPreprocessor,
  external: externalPreprocessor,
  feedback: feedbackPreprocessor,
  lineart: lineartPreprocessor,
  passthrough: passthroughPreprocessor,
});

/** A preprocessor's name, as config files write it. */
export type PreprocessorName = keyof typeof PREPROCESSORS;

/** The known preprocessor names, in order. */
export const PREPROCESSOR_NAMES: readonly PreprocessorName[] = Object.freeze(Object.keys(PREPROCESSORS) as PreprocessorName[]);

function isPreprocessorName(name: string): name is PreprocessorName {
  return Object.hasOwn(PREPROCESSORS, name);
}

/**
 * The preprocessor of that name, among the built-in ones and `extra` (a wrapper's own, see
 * `createControlNet({ preprocessors })`); an unknown name raises `InvalidArgumentError` listing the known ones.
 */
export function preprocessorNamed(name: string, extra: Readonly<Record<string, AnyPreprocessorDefinition>> = {}): AnyPreprocessorDefinition {
  if (Object.hasOwn(extra, name)) return extra[name]!;
  if (!isPreprocessorName(name)) {
    throw new InvalidArgumentError({ field: 'preprocessor', value: name, expected: `one of ${[...PREPROCESSOR_NAMES, ...Object.keys(extra)].join(', ')}` });
  }
  return PREPROCESSORS[name];
}
