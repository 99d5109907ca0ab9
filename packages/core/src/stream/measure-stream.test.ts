import { describe, expect, it } from 'vitest';
import type { FrameTimings } from '../pipeline/stream-diffusion.js';
import type { Runtime } from '../runtime/runtime.js';
import { FRAME_STAGES, measureStream, movingPattern } from './measure-stream.js';

describe('measureStream', () => {
  it('measures only the calls after the warm-up: per-stage means, latency percentiles, per-model worker time', async () => {
    let runs = 0;
    // A runtime whose worker statistics count one unet run of 4 ms per call.
    const runtime = { stats: async () => ({ runs: { unet: { count: runs, ms: runs * 4 } } }) } as unknown as Runtime;
    const calls: number[] = [];
    const call = async (index: number) => {
      calls.push(index);
      runs += 1;
      const total = index + 1;
      const timings = { preprocess: 1, encode: 2, unet: 3, scheduler: 0, decode: 2, postprocess: 1, total } as FrameTimings;
      return { timings };
    };
    const measured = await measureStream({ runtime, call, frames: 4, warmup: 2, framesPerCall: 2 });
    expect(calls).toEqual([0, 1, 0, 1, 2, 3]);
    expect(measured.stagesMs).toEqual({ preprocess: 1, encode: 2, unet: 3, scheduler: 0, decode: 2, postprocess: 1 });
    expect(Object.keys(measured.stagesMs)).toEqual([...FRAME_STAGES]);
    // Latencies of the measured calls are 1, 2, 3, 4 ms (their timings.total).
    expect(measured.latencyMs).toMatchObject({ p50: 2, p99: 4, min: 1, max: 4 });
    expect(measured.models).toEqual({ unet: { runsPerCall: 1, msPerCall: 4 } });
    expect(measured.fps).toBeCloseTo(2 * measured.callsPerSecond, 6);
    expect(measured.firstCallMs).toBeGreaterThanOrEqual(0);
  });

  it('with overlap, makes the next call before the last result is back (two in flight), and resets your counters after the warm-up', async () => {
    const runtime = { stats: async () => ({ runs: {} }) } as unknown as Runtime;
    let inFlight = 0;
    let most = 0;
    let counted = 0;
    const call = async (index: number) => {
      inFlight += 1;
      most = Math.max(most, inFlight);
      counted += 1;
      await new Promise((done) => setTimeout(done, 5));
      inFlight -= 1;
      return { timings: { preprocess: 0, encode: 0, unet: 0, scheduler: 0, decode: 0, postprocess: 0, total: index + 1 } as FrameTimings };
    };
    const measured = await measureStream({ runtime, call, frames: 4, warmup: 2, overlap: true, beforeMeasuring: () => (counted = 0) });
    expect(most).toBe(2);
    expect(counted).toBe(4);
    expect(measured.latencyMs).toMatchObject({ min: 1, max: 4 });
  });

  it('makes a different pattern every frame', () => {
    const [a, b] = [movingPattern(0, 8, 4), movingPattern(1, 8, 4)];
    expect([a.width, a.height, a.channels, a.data.length]).toEqual([8, 4, 3, 96]);
    expect(a.data).not.toEqual(b.data);
  });
});
