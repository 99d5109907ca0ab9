import { InvalidArgumentError, type ParameterMeta } from '@streamdiffusion/core';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { parsePreprocessorParameters } from './preprocessor-parameters.js';
import { PREPROCESSOR_NAMES, PREPROCESSORS, preprocessorNamed } from './preprocessors.js';

describe('the preprocessor registry', () => {
  it('holds the six preprocessors, each under its own name', () => {
    expect([...PREPROCESSOR_NAMES].sort()).toEqual(['canny', 'depth', 'external', 'feedback', 'lineart', 'passthrough']);
    for (const name of PREPROCESSOR_NAMES) {
      expect(PREPROCESSORS[name].name).toBe(name);
      expect(preprocessorNamed(name)).toBe(PREPROCESSORS[name]);
      expect(PREPROCESSORS[name].description.length).toBeGreaterThan(10);
    }
  });

  it('marks which preprocessors need a model and which use the previous output', () => {
    const needsModel = PREPROCESSOR_NAMES.filter((name) => PREPROCESSORS[name].needsModel);
    const usesPrevious = PREPROCESSOR_NAMES.filter((name) => PREPROCESSORS[name].usesPreviousOutput);
    expect(needsModel.sort()).toEqual(['depth', 'lineart']);
    expect(usesPrevious).toEqual(['feedback']);
  });

  it('rejects an unknown name, listing the known ones', () => {
    let caught: unknown;
    try {
      preprocessorNamed('depth_tensorrt');
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(InvalidArgumentError);
    expect((caught as InvalidArgumentError).field).toBe('preprocessor');
    expect((caught as Error).message).toBe(
      'preprocessor: expected one of canny, depth, external, feedback, lineart, passthrough, got "depth_tensorrt"',
    );
    // Inherited object keys are not preprocessors.
    expect(() => preprocessorNamed('toString')).toThrow(InvalidArgumentError);
  });

  it('gives every parameter a default, a description and the hot update kind', () => {
    for (const name of PREPROCESSOR_NAMES) {
      const definition = preprocessorNamed(name);
      const shape = (definition.parameters as unknown as z.ZodObject).shape as Record<string, z.ZodType>;
      expect(() => {
        parsePreprocessorParameters(definition, undefined);
      }, name).not.toThrow();
      for (const [key, field] of Object.entries(shape)) {
        expect(field.description, `${name}.${key}`).toMatch(/\w{4,}/);
        expect((field.meta() as ParameterMeta | undefined)?.update, `${name}.${key}`).toBe('hot');
        expect(field.safeParse(undefined).success, `${name}.${key} has a default`).toBe(true);
      }
    }
  });

  it('names preprocessor_params itself when the parameters are not an object', () => {
    expect(() => parsePreprocessorParameters(PREPROCESSORS.canny, 5)).toThrow(
      'preprocessor_params: expected object (preprocessor "canny"), got 5',
    );
  });

  it('puts the field under a caller-given prefix', () => {
    expect(() => parsePreprocessorParameters(PREPROCESSORS.feedback, { feedback_strength: 2 }, { field: 'controlnets.1.preprocessor_params' })).toThrow(
      'controlnets.1.preprocessor_params.feedback_strength: expected a number from 0 to 1 (preprocessor "feedback"), got 2',
    );
  });

  it('ignores keys a preprocessor does not know (the Python forks pass extra ones)', () => {
    expect(parsePreprocessorParameters(PREPROCESSORS.canny, { low_threshold: 50, detect_resolution: 512 })).toEqual({
      low_threshold: 50,
      high_threshold: 200,
    });
  });
});
