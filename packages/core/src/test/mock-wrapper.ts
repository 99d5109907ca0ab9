/**
 * A UNetWrapperV1 for tests: it feeds each of its UNet inputs with a latent-shaped tensor filled with
 * `<prefix>_residual`, appends `extraTokens` tokens filled with `<prefix>_token`, and records every
 * lifecycle event and UNet call, so tests can see what a pipeline did with it and when.
 */
import { z } from 'zod';
import { hostTensor } from '../runtime/host-tensor.js';
import type { PreparedWrapperUpdateV1, UNetWrapperV1, WrapperFrameImageV1, WrapperFrameV1, WrapperPipelineV1, WrapperUnetCallV1 } from '../wrappers/unet-wrapper-v1.js';

/** The mock's parameters: two hot values and one reload choice, named after its prefix. */
export type MockWrapperParameters<Prefix extends string = 'mock'> = { [Key in `${Prefix}_residual` | `${Prefix}_token`]: number } & {
  [Key in `${Prefix}_variant`]: 'a' | 'b';
};

/** What the mock saw of one UNet run. */
export interface MockWrapperCall {
  /** The mock's hot values in force for this run. */
  readonly residual: number;
  readonly token: number;
  readonly batch: number;
  readonly timesteps: readonly number[];
  readonly steps: readonly number[];
  readonly unconditional: readonly boolean[];
  /** Length of the text embeddings it was given (batch · 77 · D). */
  readonly textEmbeddingValues: number;
  /** The first value of each frame image, by name (to tell images apart). */
  readonly images: Readonly<Record<string, number>>;
  /** Whether the run had an input frame (img2img) or not (txt2img). */
  readonly hasInput: boolean;
  /** The frame's number (frames numbered as first seen). */
  readonly frame: number;
  /** The first bytes of each previous output image (`frame.previousOutput()`), or null before any. */
  readonly previousOutput: readonly (readonly number[])[] | null;
}

/** Options of {@link createMockWrapper}. */
export interface MockWrapperOptions<Prefix extends string> {
  /** Parameter key prefix (`mock` → `mock_residual`, `mock_token`, `mock_variant`). */
  readonly prefix?: Prefix;
  readonly name?: string;
  /** UNet inputs it feeds, each `[batch, C, h, w]`. Default none. */
  readonly unetInputs?: readonly string[];
  /** Prompt tokens it appends. Default 0. */
  readonly extraTokens?: number;
  readonly frameImages?: readonly WrapperFrameImageV1[];
  /** Initial values. */
  readonly residual?: number;
  readonly token?: number;
  /** Make `attach` or `prepareUpdate` fail, to test that failures leave nothing behind. */
  readonly fail?: 'attach' | 'prepare';
  /** `prepareUpdate` waits for this before it returns (a slow model load, to test that frames go on). */
  readonly prepareGate?: () => Promise<void>;
  /**
   * Implement `prepareFrame` and `releaseFrame`, recording `prepare-frame N` and `release-frame N`
   * (frames numbered as first seen); `prepareFrame` awaits `gate(N)` when given and throws for the
   * frame numbers in `fail`.
   */
  readonly frameHooks?: { readonly gate?: (frame: number) => Promise<void>; readonly fail?: readonly number[] };
}

/** The mock, with what it recorded. */
export interface MockWrapper<Prefix extends string = 'mock'> extends UNetWrapperV1<MockWrapperParameters<Prefix>> {
  /**
   * Lifecycle in order: `attach`, `prepare`, `prepared`, `commit`, `abandon`, `dispose`; with
   * `frameHooks`, also `prepare-frame N` (with ` (previous output: throws)` when asking for it there
   * threw, as it must), `unet N` per UNet run and `release-frame N`.
   */
  readonly events: string[];
  readonly calls: MockWrapperCall[];
  /** The pipeline it was attached to. */
  readonly pipeline: WrapperPipelineV1 | undefined;
}

/** Makes a {@link MockWrapper}. */
export function createMockWrapper<const Prefix extends string = 'mock'>(options: MockWrapperOptions<Prefix> = {}): MockWrapper<Prefix> {
  const prefix = options.prefix ?? ('mock' as Prefix);
  const keys = { residual: `${prefix}_residual`, token: `${prefix}_token`, variant: `${prefix}_variant` } as const;
  const parameters = {
    [keys.residual]: z.number().default(options.residual ?? 0).describe('Value of every UNet input the mock feeds.').meta({ update: 'hot' }),
    [keys.token]: z.number().default(options.token ?? 0).describe('Value of every extra prompt token the mock appends.').meta({ update: 'hot' }),
    [keys.variant]: z.enum(['a', 'b']).default('a').describe('A choice that needs a new pipeline.').meta({ update: 'reload' }),
  } as unknown as UNetWrapperV1<MockWrapperParameters<Prefix>>['parameters'];
  let state = { residual: options.residual ?? 0, token: options.token ?? 0, variant: 'a' as 'a' | 'b' };
  let pipeline: WrapperPipelineV1 | undefined;
  const events: string[] = [];
  const calls: MockWrapperCall[] = [];
  const unetInputs = [...(options.unetInputs ?? [])];
  const extraTokens = options.extraTokens ?? 0;
  const frameNumbers = new WeakMap<WrapperFrameV1, number>();
  let seen = 0;
  const numberOf = (frame: WrapperFrameV1): number => {
    let number = frameNumbers.get(frame);
    if (number === undefined) {
      number = seen;
      seen += 1;
      frameNumbers.set(frame, number);
    }
    return number;
  };
  const hooks = options.frameHooks;
  const frameHooks: Pick<UNetWrapperV1, 'prepareFrame' | 'releaseFrame'> =
    hooks === undefined
      ? {}
      : {
          async prepareFrame(frame) {
            const number = numberOf(frame);
            let asked = 'answered';
            try {
              frame.previousOutput();
            } catch {
              asked = 'throws';
            }
            events.push(`prepare-frame ${number} (previous output: ${asked})`);
            await hooks.gate?.(number);
            if (hooks.fail?.includes(number) === true) throw new Error(`mock wrapper: prepareFrame ${number} failed (as asked)`);
          },
          async releaseFrame(frame) {
            events.push(`release-frame ${numberOf(frame)}`);
          },
        };

  return {
    ...frameHooks,
    specVersion: 1,
    name: options.name ?? prefix,
    parameters,
    unetInputs,
    extraTokens,
    frameImages: options.frameImages ?? [],
    events,
    calls,
    get pipeline() {
      return pipeline;
    },
    models: () => [],
    async attach(attached) {
      events.push('attach');
      if (options.fail === 'attach') throw new Error('mock wrapper: attach failed (as asked)');
      pipeline = attached;
    },
    getState: () => ({ [keys.residual]: state.residual, [keys.token]: state.token, [keys.variant]: state.variant }) as MockWrapperParameters<Prefix>,
    async prepareUpdate(changes): Promise<PreparedWrapperUpdateV1> {
      events.push('prepare');
      if (options.fail === 'prepare') throw new Error('mock wrapper: prepareUpdate failed (as asked)');
      if (options.prepareGate !== undefined) await options.prepareGate();
      events.push('prepared');
      const given = changes as Partial<Record<string, unknown>>;
      const next = {
        residual: (given[keys.residual] as number | undefined) ?? state.residual,
        token: (given[keys.token] as number | undefined) ?? state.token,
        variant: state.variant,
      };
      const applied = [...(next.residual === state.residual ? [] : [keys.residual]), ...(next.token === state.token ? [] : [keys.token])];
      const needsReload = given[keys.variant] !== undefined && given[keys.variant] !== state.variant ? [keys.variant] : [];
      return {
        applied,
        needsReload,
        commit: () => {
          events.push('commit');
          state = next;
        },
        abandon: async () => {
          events.push('abandon');
        },
      };
    },
    async unetCall(call: WrapperUnetCallV1) {
      if (pipeline === undefined) throw new Error('mock wrapper: unetCall before attach');
      const [channels, height, width] = pipeline.latentShape;
      const frame = numberOf(call.frame);
      if (hooks !== undefined) events.push(`unet ${frame}`);
      calls.push({
        frame,
        residual: state.residual,
        token: state.token,
        batch: call.batch,
        timesteps: [...call.timesteps],
        steps: [...call.steps],
        unconditional: [...call.unconditional],
        textEmbeddingValues: call.textEmbeddings.length,
        images: Object.fromEntries([...call.frame.images].map(([name, image]) => [name, image[0] ?? Number.NaN])),
        hasInput: call.frame.input !== undefined,
        previousOutput: call.frame.previousOutput()?.map((image) => [...image.data.subarray(0, 6)]) ?? null,
      });
      const dims = [call.batch, channels, height, width];
      const size = call.batch * channels * height * width;
      const inputs = Object.fromEntries(unetInputs.map((name) => [name, hostTensor(new Float32Array(size).fill(state.residual), dims)]));
      const embeddingWidth = pipeline.model.capabilities.textEmbeddingWidth;
      return extraTokens === 0 ? { inputs } : { inputs, tokens: new Float32Array(call.batch * extraTokens * embeddingWidth).fill(state.token) };
    },
    async dispose() {
      events.push('dispose');
    },
  };
}
