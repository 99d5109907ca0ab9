/**
 * The pipeline's parameters as ONE zod schema: the single source that config files, CLI flags,
 * demo controls and the updater are derived from (DESIGN §5). Keys are the Python StreamDiffusion
 * forks' snake_case names, so their config files read unchanged.
 */
import { z } from 'zod';
import { CFG_TYPES } from '../pipeline/stream-batch.js';

/**
 * What changing a parameter costs while a stream runs: `hot` applies to the running stream,
 * `reload` re-creates the pipeline (and the model, for `model_id`), `rebuild` rebuilds or refits
 * compiled engines.
 */
export type ParameterUpdate = 'hot' | 'reload' | 'rebuild';

/** The metadata every parameter carries in the schema, next to its description. */
export interface ParameterMeta {
  readonly update: ParameterUpdate;
}

/** Attaches the description and the update kind; one helper so no field can forget either. */
function parameter<T extends z.ZodType>(schema: T, description: string, update: ParameterUpdate): T {
  const meta: ParameterMeta = { update };
  return schema.describe(description).meta({ ...meta });
}

/** A `[value, weight]` pair as the Python forks write blending lists. */
function weighted<T extends z.ZodType>(value: T) {
  return z.tuple([value, z.number().min(0)]);
}

/** Blending methods of the Python forks' prompt and seed blending. */
export const INTERPOLATION_METHODS = Object.freeze(['linear', 'slerp'] as const);

/**
 * `prompt_blending`: a list of `[prompt, weight]`, or the forks' object form with `prompt_list`.
 * Validated now so config files are checked; the pipeline does not blend prompts yet.
 */
const promptBlending = z.union([
  z.array(weighted(z.string())).min(1),
  z.object({
    prompt_list: z.array(weighted(z.string())).min(1),
    interpolation_method: z.enum(INTERPOLATION_METHODS).default('slerp'),
    enable_caching: z.boolean().optional(),
  }),
]);

/** `seed_blending`: a list of `[seed, weight]`, or the forks' object form with `seed_list`. */
const seedBlending = z.union([
  z.array(weighted(z.int())).min(1),
  z.object({
    seed_list: z.array(weighted(z.int())).min(1),
    interpolation_method: z.enum(INTERPOLATION_METHODS).default('linear'),
  }),
]);

/**
 * The parameters a running stream changes between frames (`stream.update`), field by field.
 * Defaults are the pipeline's own (the Python original's), so a config that leaves a key out gets
 * what `createStreamDiffusion` would have chosen.
 */
export const hotParametersShape = {
    prompt: parameter(z.string().default(''), 'Prompt the output follows (text, CLIP-tokenized; longer than 77 tokens is truncated).', 'hot'),
    negative_prompt: parameter(
      z.string().default(''),
      'What to steer away from; used only by cfg_type "initialize" and "full" with guidance_scale > 1.',
      'hot',
    ),
    t_index_list: parameter(
      z.array(z.int().min(0)).min(1).default([32, 45]),
      'Indices into the num_inference_steps-step LCM schedule, noisiest first; each an integer in [0, num_inference_steps). Same length: constants recomputed; new length: stream buffers rebuilt.',
      'hot',
    ),
    num_inference_steps: parameter(
      z.int().min(1).max(1000).default(50),
      'Length of the LCM schedule that t_index_list points into (steps, integer 1–1000).',
      'hot',
    ),
    guidance_scale: parameter(
      z.number().min(0).max(100).default(1.2),
      'Guidance scale γ (0–100); guidance is active only above 1.',
      'hot',
    ),
    delta: parameter(z.number().min(0).max(100).default(1), 'RCFG virtual residual noise multiplier δ (0–100).', 'hot'),
    seed: parameter(
      z.int().default(2),
      'Noise seed, as torch.Generator().manual_seed(seed) (safe integer; negative values wrap to uint64 like torch).',
      'hot',
    ),
    enable_similar_image_filter: parameter(
      z.boolean().default(false),
      'Skip input frames nearly identical to the last processed one (img2img only).',
      'hot',
    ),
    similar_image_filter_threshold: parameter(
      z.number().min(0).max(1).default(0.98),
      'Cosine similarity (0–1) at or above which a frame is always skippable; 1 never skips.',
      'hot',
    ),
    similar_image_filter_max_skip_frame: parameter(
      z.int().min(0).default(10),
      'Most input frames skipped in a row by the similarity filter (frames, integer ≥ 0).',
      'hot',
    ),
    prompt_blending: parameter(
      promptBlending.optional(),
      'Weighted prompts instead of prompt: a list of [prompt, weight ≥ 0], or { prompt_list, interpolation_method: linear | slerp } (slerp, the default, applies to exactly two prompts; more are summed).',
      'hot',
    ),
    seed_blending: parameter(
      seedBlending.optional(),
      'Weighted seeds instead of seed: a list of [seed, weight ≥ 0], or { seed_list, interpolation_method }: per-seed noise summed by weight and rescaled to the mean norm.',
      'hot',
    ),
    normalize_prompt_weights: parameter(z.boolean().default(true), 'Divide prompt_blending weights by their sum.', 'hot'),
    normalize_seed_weights: parameter(z.boolean().default(true), 'Divide seed_blending weights by their sum.', 'hot'),
};

/** The parameters fixed for a pipeline's life: changing one needs a new pipeline. */
export const reloadParametersShape = {
    width: parameter(
      z.int().min(8).max(8192).multipleOf(8).default(512),
      'Output width in pixels (integer, multiple of 8; SD-family models need a multiple of 64, checked when the pipeline is built).',
      'reload',
    ),
    height: parameter(
      z.int().min(8).max(8192).multipleOf(8).default(512),
      'Output height in pixels (integer, multiple of 8; SD-family models need a multiple of 64, checked when the pipeline is built).',
      'reload',
    ),
    frame_buffer_size: parameter(z.int().min(1).max(64).default(1), 'Frames per call, f (integer 1–64).', 'reload'),
    cfg_type: parameter(
      z.enum(CFG_TYPES).default('self'),
      'Classifier-free guidance variant: none, self (RCFG self-negative), initialize (RCFG onetime-negative) or full.',
      'reload',
    ),
    do_add_noise: parameter(z.boolean().default(true), 'Re-noise the stream buffer between denoising steps.', 'reload'),
    use_denoising_batch: parameter(
      z.boolean().default(true),
      'Denoise every step of every frame in one UNet call (stream batch), or step by step per frame.',
      'reload',
    ),
};

/** Every pipeline parameter, for schemas that add keys (the config file's). */
export const streamParametersShape = { ...hotParametersShape, ...reloadParametersShape };

/** A shape's fields without their defaults, for partial updates where an absent key means "unchanged". */
export type WithoutDefaults<Shape extends Record<string, z.ZodType>> = {
  [Key in keyof Shape]: Shape[Key] extends z.ZodDefault<infer Inner> ? Inner : Shape[Key];
};

/**
 * Strips `.default()` from each field (a default would turn "not given" into "reset"), keeping the
 * field's description and `update` meta, which sit on the default wrapper.
 */
export function withoutDefaults<Shape extends Record<string, z.ZodType>>(shape: Shape): WithoutDefaults<Shape> {
  return Object.fromEntries(
    Object.entries(shape).map(([key, field]) => {
      if (!(field instanceof z.ZodDefault)) return [key, field];
      const inner = field.unwrap() as z.ZodType;
      const meta = field.meta();
      return [key, meta === undefined ? inner : inner.meta(meta)];
    }),
  ) as WithoutDefaults<Shape>;
}

/**
 * Cross-field rule: the schedule has num_inference_steps entries, and an index past it would
 * otherwise fail later, deep in the scheduler, without naming the key.
 */
export function checkScheduleIndices(
  value: { readonly t_index_list: readonly number[]; readonly num_inference_steps: number },
  context: z.RefinementCtx,
): void {
  value.t_index_list.forEach((index, position) => {
    if (index >= value.num_inference_steps) {
      context.addIssue({
        code: 'custom',
        input: index,
        path: ['t_index_list', position],
        message: `must be an integer below num_inference_steps (${value.num_inference_steps}), got ${index}`,
      });
    }
  });
}

/** The pipeline's parameters, validated together (see {@link streamParametersShape} for each field). */
export const streamParametersSchema = z.object(streamParametersShape).superRefine(checkScheduleIndices);

/** Validated pipeline parameters, defaults filled in. */
export type StreamParameters = z.output<typeof streamParametersSchema>;

/** Pipeline parameters as written in a config file: every key optional. */
export type StreamParametersInput = z.input<typeof streamParametersSchema>;
