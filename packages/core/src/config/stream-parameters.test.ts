import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { streamParametersSchema, streamParametersShape, type ParameterUpdate } from './stream-parameters.js';

describe('streamParametersSchema', () => {
  it('fills in the pipeline defaults from an empty object', () => {
    expect(streamParametersSchema.parse({})).toEqual({
      prompt: '',
      negative_prompt: '',
      t_index_list: [32, 45],
      num_inference_steps: 50,
      width: 512,
      height: 512,
      frame_buffer_size: 1,
      cfg_type: 'self',
      guidance_scale: 1.2,
      delta: 1,
      seed: 2,
      do_add_noise: true,
      use_denoising_batch: true,
      enable_similar_image_filter: false,
      similar_image_filter_threshold: 0.98,
      similar_image_filter_max_skip_frame: 10,
      normalize_prompt_weights: true,
      normalize_seed_weights: true,
    });
  });

  it('gives every field a description and the update kind DESIGN §5 assigns it', () => {
    const expected: Record<string, ParameterUpdate> = {
      prompt: 'hot',
      negative_prompt: 'hot',
      t_index_list: 'hot',
      num_inference_steps: 'hot',
      guidance_scale: 'hot',
      delta: 'hot',
      seed: 'hot',
      enable_similar_image_filter: 'hot',
      similar_image_filter_threshold: 'hot',
      similar_image_filter_max_skip_frame: 'hot',
      prompt_blending: 'hot',
      seed_blending: 'hot',
      normalize_prompt_weights: 'hot',
      normalize_seed_weights: 'hot',
      width: 'reload',
      height: 'reload',
      cfg_type: 'reload',
      frame_buffer_size: 'reload',
      use_denoising_batch: 'reload',
      do_add_noise: 'reload',
    };
    expect(Object.keys(streamParametersShape).sort()).toEqual(Object.keys(expected).sort());
    for (const [key, field] of Object.entries(streamParametersShape)) {
      const meta = z.globalRegistry.get(field);
      expect(meta?.description, key).toMatch(/\w{3}/);
      expect(meta?.update, key).toBe(expected[key]);
    }
  });

  it('accepts both blending shapes of the Python forks and rejects malformed pairs', () => {
    const list = streamParametersSchema.parse({ prompt_blending: [['a cat', 0.7], ['a dog', 0.3]], seed_blending: [[1, 0.5], [2, 0.5]] });
    expect(list.prompt_blending).toEqual([['a cat', 0.7], ['a dog', 0.3]]);
    const object = streamParametersSchema.parse({ prompt_blending: { prompt_list: [['a cat', 1]] }, seed_blending: { seed_list: [[3, 1]], interpolation_method: 'slerp' } });
    expect(object.prompt_blending).toEqual({ prompt_list: [['a cat', 1]], interpolation_method: 'slerp' });
    expect(streamParametersSchema.safeParse({ prompt_blending: [['a cat']] }).success).toBe(false);
    expect(streamParametersSchema.safeParse({ prompt_blending: [['a cat', -1]] }).success).toBe(false);
    expect(streamParametersSchema.safeParse({ seed_blending: [[1.5, 1]] }).success).toBe(false);
  });

  it('rejects t_index_list entries past num_inference_steps, naming the entry', () => {
    const result = streamParametersSchema.safeParse({ t_index_list: [0, 4], num_inference_steps: 4 });
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.path).toEqual(['t_index_list', 1]);
  });
});
