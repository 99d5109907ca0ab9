/**
 * Measuring a pipeline: frames per second, latency percentiles, time per stage and per model run,
 * for benchmarks that print numbers (`pnpm bench`, `streamdiffusion bench`, the feature packages'
 * benches). Never used to decide a test.
 */
import type { RgbImage } from '../image/image.js';
import type { FrameTimings } from '../pipeline/stream-diffusion.js';
import type { Runtime } from '../runtime/runtime.js';

/** The stages of a frame, in order. */
export const FRAME_STAGES = Object.freeze(['preprocess', 'encode', 'unet', 'scheduler', 'decode', 'postprocess'] as const);

/** What {@link measureStream} measured. */
export interface StreamMeasurement {
  /** Output frames per second (calls × frames per call). */
  readonly fps: number;
  readonly callsPerSecond: number;
  readonly latencyMs: { readonly mean: number; readonly p50: number; readonly p99: number; readonly min: number; readonly max: number };
  /** Mean milliseconds per call in each stage. */
  readonly stagesMs: Readonly<Record<(typeof FRAME_STAGES)[number], number>>;
  /** Per model (and the runtime's own helper runs): runs and worker milliseconds per call. */
  readonly models: Readonly<Record<string, { readonly runsPerCall: number; readonly msPerCall: number }>>;
  readonly modelMsPerCall: number;
  /** The share of call time spent outside model runs (JavaScript, transfers, waiting). */
  readonly outsideModelRunsShare: number;
  readonly firstCallMs: number;
  readonly warmupMs: number;
}

/** A moving colour pattern, frame `index` at `width` × `height`: benchmark input that changes every frame. */
export function movingPattern(index: number, width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const offset = (y * width + x) * 3;
      data[offset] = (x + index * 3) & 255;
      data[offset + 1] = (y + index * 5) & 255;
      data[offset + 2] = ((x ^ y) + index * 7) & 255;
    }
  }
  return { data, width, height, channels: 3 };
}

function percentile(sorted: readonly number[], fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))]!;
}

/**
 * Calls `call(index)` `warmup` times, then `frames` times, and measures the second part: one call
 * after the other, or with `overlap` the next call made before the last one's result is back (two
 * in flight, as `createFrameStream({ overlap: true })` runs a live source). `runtime` gives the
 * per-model times (its worker's run statistics).
 */
export async function measureStream(options: {
  readonly runtime: Runtime;
  readonly call: (index: number) => Promise<{ readonly timings: FrameTimings }>;
  readonly frames: number;
  readonly warmup: number;
  /** Output frames per call (frame_buffer_size). Default 1. */
  readonly framesPerCall?: number;
  /** Two calls in flight instead of one. Default false. */
  readonly overlap?: boolean;
  /** Called between the warm-up and the measured calls (to reset counters of your own). */
  readonly beforeMeasuring?: () => void;
}): Promise<StreamMeasurement> {
  const { runtime, call, frames, warmup } = options;
  /** `count` calls from index `first`; each result's timings go to `take`, in order. */
  const runCalls = async (first: number, count: number, take: (timings: FrameTimings) => void): Promise<void> => {
    let pending: Promise<{ readonly timings: FrameTimings }> | undefined;
    for (let index = first; index < first + count; index += 1) {
      const next = call(index);
      if (options.overlap !== true) {
        take((await next).timings);
        continue;
      }
      if (pending !== undefined) take((await pending).timings);
      pending = next;
    }
    if (pending !== undefined) take((await pending).timings);
  };
  const warmStarted = performance.now();
  let firstCallMs = Number.NaN;
  await runCalls(0, warmup, (timings) => {
    if (Number.isNaN(firstCallMs)) firstCallMs = timings.total;
  });
  const warmupMs = performance.now() - warmStarted;
  options.beforeMeasuring?.();

  const before = await runtime.stats();
  const latencies: number[] = [];
  const sums = Object.fromEntries(FRAME_STAGES.map((stage) => [stage, 0])) as Record<(typeof FRAME_STAGES)[number], number>;
  const started = performance.now();
  await runCalls(0, frames, (timings) => {
    latencies.push(timings.total);
    for (const stage of FRAME_STAGES) sums[stage] += timings[stage];
  });
  const elapsedMs = performance.now() - started;
  const after = await runtime.stats();

  const calls = Math.max(1, frames);
  const models = Object.fromEntries(
    Object.entries(after.runs)
      .filter(([name, total]) => total.count > (before.runs[name]?.count ?? 0))
      .map(([name, total]) => {
        const earlier = before.runs[name] ?? { count: 0, ms: 0 };
        return [name, { runsPerCall: (total.count - earlier.count) / calls, msPerCall: (total.ms - earlier.ms) / calls }];
      }),
  );
  const modelMsPerCall = Object.values(models).reduce((sum, entry) => sum + entry.msPerCall, 0);
  const sorted = [...latencies].sort((a, b) => a - b);
  const msPerCall = elapsedMs / calls;
  return {
    fps: (frames * (options.framesPerCall ?? 1)) / (elapsedMs / 1000),
    callsPerSecond: frames / (elapsedMs / 1000),
    latencyMs: { mean: msPerCall, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), min: sorted[0] ?? Number.NaN, max: sorted.at(-1) ?? Number.NaN },
    stagesMs: Object.fromEntries(FRAME_STAGES.map((stage) => [stage, sums[stage] / calls])) as StreamMeasurement['stagesMs'],
    models,
    modelMsPerCall,
    outsideModelRunsShare: msPerCall > 0 ? Math.max(0, 1 - modelMsPerCall / msPerCall) : Number.NaN,
    firstCallMs,
    warmupMs,
  };
}
