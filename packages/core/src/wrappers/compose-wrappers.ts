/**
 * How the pipeline composes UNetWrapperV1 wrappers: the checks made before anything loads, the
 * per-run merge of their UNet inputs and extra tokens, the per-frame images, and the two-phase
 * updates that land together with the pipeline's own.
 */
import type { RgbImage } from '../image/image.js';
import { z } from 'zod';
import { InvalidArgumentError } from '../errors/errors.js';
import { TEXT_TOKENS, UNET_INPUTS } from '../model-folder/unet-inputs.js';
import type { HostTensor } from '../runtime/host-tensor.js';
import type { ModelSignature } from '../runtime/model-signature.js';
import type { RuntimeTensor } from '../runtime/runtime.js';
import type { AnyUNetWrapperV1, PreparedWrapperUpdateV1, WrapperFrameV1, WrapperUnetCallV1 } from './unet-wrapper-v1.js';

const BASE_INPUTS: ReadonlySet<string> = new Set([UNET_INPUTS.sample, UNET_INPUTS.timestep, UNET_INPUTS.encoderHiddenStates]);

function label(wrapper: AnyUNetWrapperV1, index: number): string {
  return `wrappers[${index}] (${wrapper.name})`;
}

/**
 * Checks a wrapper list against the pipeline's parameter keys and the model's UNet, before any
 * wrapper loads a model: a v1 spec, parameter keys owned once, every UNet input it feeds present
 * (and fed by one wrapper only), every extra UNet input fed by some wrapper, and the UNet's token
 * count equal to 77 plus the wrappers' extra tokens.
 * @throws {InvalidArgumentError} naming the wrapper, the field and what the model offers.
 */
export function checkWrappers(
  wrappers: readonly AnyUNetWrapperV1[],
  context: { readonly pipelineKeys: readonly string[]; readonly unet: ModelSignature; readonly unetPath: string },
): void {
  const owners = new Map<string, string>(context.pipelineKeys.map((key) => [key, 'the pipeline']));
  const fedBy = new Map<string, string>();
  const available = context.unet.inputs.map((input) => input.name);
  wrappers.forEach((wrapper, index) => {
    const name = label(wrapper, index);
    if ((wrapper as { specVersion?: unknown }).specVersion !== 1) {
      throw new InvalidArgumentError({ field: `${name}.specVersion`, value: (wrapper as { specVersion?: unknown }).specVersion, expected: '1 (a UNetWrapperV1)' });
    }
    for (const key of Object.keys(wrapper.parameters)) {
      const owner = owners.get(key);
      if (owner !== undefined) throw new InvalidArgumentError({ field: `${name}.parameters`, value: key, expected: `a key no one else owns (${owner} owns "${key}")` });
      owners.set(key, name);
    }
    for (const input of wrapper.unetInputs) {
      if (BASE_INPUTS.has(input)) throw new InvalidArgumentError({ field: `${name}.unetInputs`, value: input, expected: 'an input beyond sample, timestep and encoder_hidden_states (the pipeline feeds those)' });
      if (!available.includes(input)) {
        throw new InvalidArgumentError({
          field: `${name}.unetInputs`,
          value: input,
          expected: `an input of the model's UNet (${context.unetPath} has ${available.join(', ')}); export the UNet with the inputs this wrapper needs`,
        });
      }
      const other = fedBy.get(input);
      if (other !== undefined) throw new InvalidArgumentError({ field: `${name}.unetInputs`, value: input, expected: `an input no other wrapper feeds (${other} feeds it)` });
      fedBy.set(input, name);
    }
    if (!Number.isInteger(wrapper.extraTokens) || wrapper.extraTokens < 0) {
      throw new InvalidArgumentError({ field: `${name}.extraTokens`, value: wrapper.extraTokens, expected: 'an integer ≥ 0' });
    }
  });
  const unfed = available.filter((input) => !BASE_INPUTS.has(input) && !fedBy.has(input));
  if (unfed.length > 0) {
    throw new InvalidArgumentError({
      field: 'wrappers',
      value: wrappers.map((wrapper) => wrapper.name),
      expected: `wrappers that feed the UNet inputs ${unfed.join(', ')} of ${context.unetPath} (ControlNet residuals: @streamdiffusion/controlnet; ip_adapter_scale: @streamdiffusion/ip-adapter)`,
    });
  }
  const hidden = context.unet.inputs.find((input) => input.name === UNET_INPUTS.encoderHiddenStates);
  const tokens = hidden?.shape[1];
  const wanted = TEXT_TOKENS + extraTokens(wrappers);
  if (typeof tokens === 'number' && tokens >= 0 && tokens !== wanted) {
    const list = wrappers.filter((wrapper) => wrapper.extraTokens > 0).map((wrapper) => `${wrapper.name} ${wrapper.extraTokens}`);
    throw new InvalidArgumentError({
      field: 'wrappers',
      value: wrappers.map((wrapper) => wrapper.name),
      expected: `extra prompt tokens that fill the UNet's ${tokens} tokens (${TEXT_TOKENS} text + ${tokens - TEXT_TOKENS}); these give ${TEXT_TOKENS} text${list.length === 0 ? '' : ` + ${list.join(' + ')}`} = ${wanted}`,
    });
  }
}

/** Extra prompt tokens of all wrappers together. */
export function extraTokens(wrappers: readonly AnyUNetWrapperV1[]): number {
  return wrappers.reduce((sum, wrapper) => sum + wrapper.extraTokens, 0);
}

/** The wrappers' parameter fields together (keys are checked unique by {@link checkWrappers}). */
export function wrapperParameterShape(wrappers: readonly AnyUNetWrapperV1[]): Record<string, z.ZodType> {
  return Object.assign({}, ...wrappers.map((wrapper) => wrapper.parameters as Record<string, z.ZodType>)) as Record<string, z.ZodType>;
}

/** Checks that a wrapper's state validates against its own parameters (so `getState` round-trips). */
export function checkWrapperState(wrapper: AnyUNetWrapperV1, index: number): void {
  const parsed = z.object(wrapper.parameters as Record<string, z.ZodType>).strict().safeParse(wrapper.getState());
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InvalidArgumentError({ field: `${label(wrapper, index)}.getState().${issue.path.map(String).join('.')}`, value: 'its state', expected: `a state its own parameters accept (${issue.message})` });
  }
}

/**
 * The images of one frame for the wrappers: the given ones by name, the input frame where a wrapper
 * falls back to it. Unknown names and missing required images are refused before the frame runs.
 */
export function frameImages(
  wrappers: readonly AnyUNetWrapperV1[],
  input: Float32Array | undefined,
  given: Readonly<Record<string, Float32Array>> | undefined,
  expectedLength: number,
  describe: string,
  previousOutput: () => readonly RgbImage[] | undefined = () => undefined,
): WrapperFrameV1 {
  const images = new Map<string, Float32Array>();
  const known = new Set<string>();
  for (const wrapper of wrappers) {
    for (const spec of wrapper.frameImages) {
      known.add(spec.name);
      const image = given?.[spec.name];
      if (image !== undefined) {
        if (image.length !== expectedLength) throw new InvalidArgumentError({ field: `images.${spec.name}`, value: `${image.length} values`, expected: describe });
        images.set(spec.name, image);
      } else if (spec.fallback === 'input' && input !== undefined) {
        images.set(spec.name, input);
      } else {
        throw new InvalidArgumentError({ field: `images.${spec.name}`, value: undefined, expected: `${spec.description} (${wrapper.name}; ${input === undefined ? 'there is no input frame to fall back to' : 'it is required'})` });
      }
    }
  }
  for (const name of Object.keys(given ?? {})) {
    if (!known.has(name)) throw new InvalidArgumentError({ field: `images.${name}`, value: name, expected: known.size === 0 ? 'no images (no wrapper takes any)' : `one of ${[...known].join(', ')}` });
  }
  return { input, images, previousOutput };
}

/** Every wrapper's optional `prepareFrame` for one frame, side by side; the first error fails the frame. */
export async function prepareFrames(wrappers: readonly AnyUNetWrapperV1[], frame: WrapperFrameV1): Promise<void> {
  await Promise.all(wrappers.map((wrapper) => wrapper.prepareFrame?.(frame) ?? Promise.resolve()));
}

/** Every wrapper's optional `releaseFrame` for one frame; a wrapper that throws anyway does not stop the others. */
export async function releaseFrames(wrappers: readonly AnyUNetWrapperV1[], frame: WrapperFrameV1): Promise<void> {
  await Promise.allSettled(wrappers.map((wrapper) => wrapper.releaseFrame?.(frame) ?? Promise.resolve()));
}

/**
 * Hidden states merged before, by the arrays they were merged from: a stream runs the same few
 * layouts every frame, and the pipeline's text embeddings and a wrapper's tokens are then the same
 * arrays, so their merge is made once (see {@link wrapperContributions}).
 */
export interface HiddenStatesMemo {
  readonly entries: { readonly text: Float32Array; readonly blocks: readonly Float32Array[]; readonly states: Float32Array }[];
}

/** Merges kept per pipeline; a handful covers every layout of a stream. */
const MEMO_SIZE = 8;

/** An empty {@link HiddenStatesMemo}, one per pipeline. */
export function hiddenStatesMemo(): HiddenStatesMemo {
  return { entries: [] };
}

/**
 * Runs every wrapper for one UNet call, in order, and merges what they give: their inputs by name,
 * and the encoder hidden states `[batch, 77 + extra, D]` (text tokens, then each wrapper's tokens).
 * With `memo`, a merge of the very arrays merged before is not made again (wrappers that return the
 * same token array for the same layout save the copy every frame).
 */
export async function wrapperContributions(
  wrappers: readonly AnyUNetWrapperV1[],
  call: WrapperUnetCallV1,
  embeddingWidth: number,
  memo?: HiddenStatesMemo,
): Promise<{ readonly inputs: Record<string, HostTensor | RuntimeTensor>; readonly encoderHiddenStates: Float32Array; readonly tokens: number }> {
  const inputs: Record<string, HostTensor | RuntimeTensor> = {};
  const tokenBlocks: Float32Array[] = [];
  for (const [index, wrapper] of wrappers.entries()) {
    const contribution = await wrapper.unetCall(call);
    const given = Object.keys(contribution.inputs).sort();
    const declared = [...wrapper.unetInputs].sort();
    if (given.join() !== declared.join()) {
      throw new InvalidArgumentError({ field: `${label(wrapper, index)}.unetCall().inputs`, value: given, expected: `exactly its unetInputs (${declared.join(', ') || 'none'})` });
    }
    Object.assign(inputs, contribution.inputs);
    if (wrapper.extraTokens > 0) {
      const size = call.batch * wrapper.extraTokens * embeddingWidth;
      if (contribution.tokens?.length !== size) {
        throw new InvalidArgumentError({
          field: `${label(wrapper, index)}.unetCall().tokens`,
          value: contribution.tokens === undefined ? undefined : `${contribution.tokens.length} values`,
          expected: `[${call.batch}, ${wrapper.extraTokens}, ${embeddingWidth}] = ${size} values`,
        });
      }
      tokenBlocks.push(contribution.tokens);
    }
  }
  if (tokenBlocks.length === 0) return { inputs, encoderHiddenStates: call.textEmbeddings, tokens: TEXT_TOKENS };
  const tokens = TEXT_TOKENS + extraTokens(wrappers);
  const merged = memo?.entries.find((entry) => entry.text === call.textEmbeddings && entry.blocks.length === tokenBlocks.length && entry.blocks.every((block, index) => block === tokenBlocks[index]));
  if (merged !== undefined) return { inputs, encoderHiddenStates: merged.states, tokens };
  const row = tokens * embeddingWidth;
  const textRow = TEXT_TOKENS * embeddingWidth;
  const states = new Float32Array(call.batch * row);
  for (let entry = 0; entry < call.batch; entry++) {
    states.set(call.textEmbeddings.subarray(entry * textRow, (entry + 1) * textRow), entry * row);
    let offset = entry * row + textRow;
    for (const block of tokenBlocks) {
      const blockRow = block.length / call.batch;
      states.set(block.subarray(entry * blockRow, (entry + 1) * blockRow), offset);
      offset += blockRow;
    }
  }
  if (memo !== undefined) {
    memo.entries.unshift({ text: call.textEmbeddings, blocks: tokenBlocks, states });
    memo.entries.length = Math.min(memo.entries.length, MEMO_SIZE);
  }
  return { inputs, encoderHiddenStates: states, tokens };
}

/** Every wrapper's prepared share of one update, committed or abandoned together. */
export interface PreparedWrapperUpdates {
  readonly applied: readonly string[];
  readonly needsReload: readonly string[];
  commit(): void;
  abandon(): Promise<void>;
}

/**
 * Prepares each wrapper's share of a validated update (only wrappers whose keys it names). When one
 * fails, the ones already prepared are abandoned and the error is raised: nothing changes.
 */
export async function prepareWrapperUpdates(wrappers: readonly AnyUNetWrapperV1[], changes: Readonly<Record<string, unknown>>): Promise<PreparedWrapperUpdates> {
  const prepared: PreparedWrapperUpdateV1[] = [];
  const abandon = async (): Promise<void> => {
    await Promise.allSettled(prepared.map((update) => update.abandon()));
  };
  try {
    for (const wrapper of wrappers) {
      const own = Object.fromEntries(Object.entries(changes).filter(([key]) => Object.hasOwn(wrapper.parameters, key)));
      if (Object.keys(own).length > 0) prepared.push(await wrapper.prepareUpdate(own));
    }
  } catch (error) {
    await abandon();
    throw error;
  }
  return {
    applied: prepared.flatMap((update) => update.applied),
    needsReload: prepared.flatMap((update) => update.needsReload),
    commit: () => prepared.forEach((update) => update.commit()),
    abandon,
  };
}
