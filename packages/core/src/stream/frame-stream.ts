import { DisposedError } from '../errors/errors.js';

/** Timing of one frame through a {@link FrameStream}, in milliseconds. */
export interface FrameTiming {
  /** Sequence number of the input frame (counting every pushed frame, dropped ones too). */
  readonly index: number;
  /** From `push` to the start of its processing. */
  readonly waitMs: number;
  /** Processing time (with `overlap`, this includes the processor's wait for the frame before it). */
  readonly processMs: number;
}

/** A processed frame, or the error processing it raised. */
export type FrameResult<Output> =
  | { readonly index: number; readonly output: Output; readonly timing: FrameTiming }
  | { readonly index: number; readonly error: unknown; readonly timing: FrameTiming };

/** Counters of a {@link FrameStream}. */
export interface FrameStreamStats {
  readonly pushed: number;
  readonly processed: number;
  /** Input frames replaced by a newer one before they were processed. */
  readonly dropped: number;
  readonly failed: number;
  /** Output frames per second over the last (up to) 30 processed frames. */
  readonly fps: number;
  readonly lastTiming: FrameTiming | null;
}

/**
 * A stream of frames through an async processor, built for live video: at most one frame is
 * processed at a time (two with `overlap`) and at most one waits. Pushing while one waits replaces
 * the waiting frame (the older one is dropped and counted), so a slow processor makes the stream
 * skip frames instead of growing a queue and falling behind. Results come out in order through
 * `results()`; a consumer that falls behind holds processing back the same way (no new frame starts
 * while more than one result per processing slot waits to be taken), so neither side's queue grows.
 */
export interface FrameStream<Input, Output> {
  /** Offers a frame. Never blocks, never queues more than one. Throws after `dispose()`. */
  push(frame: Input): void;
  /**
   * Processed frames (and per-frame errors) in order; ends after `dispose()`. One consumer. Untaken
   * results are bounded: at most `1 + slots` wait (slots = 1, or 2 with `overlap`); until the
   * consumer takes one, no new frame starts and pushed frames keep replacing the waiting one.
   */
  results(): AsyncIterableIterator<FrameResult<Output>>;
  readonly stats: FrameStreamStats;
  /** Stops taking frames, drops the waiting one, lets the running one finish, ends `results()`. */
  dispose(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Makes a frame stream around `process` (called for one frame at a time, or two with `overlap`). */
export function createFrameStream<Input, Output>(options: {
  readonly process: (frame: Input) => Promise<Output>;
  /**
   * Hand the next frame to `process` as soon as it arrives while one is in flight (at most two in
   * flight), for processors that prepare a frame while the one before runs: a StreamDiffusion
   * pipeline whose ControlNets preprocess frame N + 1 during the diffusion of frame N. Results still
   * come out in order. Default false: one at a time, the lowest latency.
   */
  readonly overlap?: boolean;
  /** Clock in milliseconds; `performance.now` by default (inject one in tests). */
  readonly now?: () => number;
}): FrameStream<Input, Output> {
  const now = options.now ?? (() => performance.now());
  const limit = options.overlap === true ? 2 : 1;
  let waiting: { frame: Input; index: number; pushedAt: number } | undefined;
  let inFlight = 0;
  /** Delivery, in push order: each frame's result is delivered after the one before it. */
  let delivered: Promise<void> = Promise.resolve();
  let disposed = false;
  let pushed = 0;
  let processed = 0;
  let dropped = 0;
  let failed = 0;
  let lastTiming: FrameTiming | null = null;
  const finishTimes: number[] = [];
  // Results not yet taken, and a consumer waiting for the next one.
  const ready: FrameResult<Output>[] = [];
  let wake: (() => void) | undefined;

  const deliver = (result: FrameResult<Output>): void => {
    ready.push(result);
    wake?.();
  };

  /**
   * Starts the waiting frame while there is room in flight and the consumer keeps up: results not
   * yet taken count against the room, so a consumer that stops reading stops the processing too
   * (at most `limit + 1` results wait) instead of growing `ready` without bound.
   */
  const pump = (): void => {
    while (waiting !== undefined && inFlight < limit && ready.length + inFlight <= limit) {
      const job = waiting;
      waiting = undefined;
      inFlight += 1;
      const started = now();
      const outcome = options.process(job.frame).then(
        (output) => ({ output, finished: now() }),
        (error: unknown) => ({ error, finished: now() }),
      );
      delivered = delivered.then(async () => {
        const { finished, ...result } = await outcome;
        const timing: FrameTiming = { index: job.index, waitMs: started - job.pushedAt, processMs: finished - started };
        lastTiming = timing;
        if ('error' in result) failed += 1;
        else processed += 1;
        finishTimes.push(finished);
        if (finishTimes.length > 30) finishTimes.shift();
        inFlight -= 1;
        deliver({ index: job.index, ...result, timing });
        pump();
      });
    }
  };

  return {
    push(frame) {
      if (disposed) throw new DisposedError('a FrameStream');
      if (waiting !== undefined) dropped += 1;
      waiting = { frame, index: pushed, pushedAt: now() };
      pushed += 1;
      pump();
    },
    async *results() {
      for (;;) {
        const next = ready.shift();
        if (next !== undefined) {
          pump(); // a result taken makes room for the waiting frame
          yield next;
          continue;
        }
        if (disposed && inFlight === 0) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    },
    get stats() {
      const span = finishTimes.length > 1 ? finishTimes.at(-1)! - finishTimes[0]! : 0;
      return {
        pushed,
        processed,
        dropped,
        failed,
        fps: span > 0 ? ((finishTimes.length - 1) * 1000) / span : 0,
        lastTiming,
      };
    },
    async dispose() {
      if (disposed) return;
      disposed = true;
      if (waiting !== undefined) {
        dropped += 1;
        waiting = undefined;
      }
      await delivered;
      wake?.();
    },
    async [Symbol.asyncDispose]() {
      await this.dispose();
    },
  };
}
