import { describe, expect, it } from 'vitest';
import { DisposedError } from '../errors/errors.js';
import { createFrameStream, type FrameResult } from './frame-stream.js';

/** A processor whose calls finish only when the test says so. */
function controlledProcessor() {
  const calls: { frame: number; finish: (value: number) => void; fail: (error: Error) => void }[] = [];
  const process = (frame: number) =>
    new Promise<number>((resolve, reject) => {
      calls.push({ frame, finish: resolve, fail: reject });
    });
  return { calls, process };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

async function take<T>(iterator: AsyncIterator<T>, count: number): Promise<T[]> {
  const taken: T[] = [];
  for (let index = 0; index < count; index += 1) {
    const next = await iterator.next();
    if (next.done === true) break;
    taken.push(next.value);
  }
  return taken;
}

describe('frame stream', () => {
  it('processes one frame at a time and keeps only the newest waiting frame', async () => {
    const { calls, process } = controlledProcessor();
    const stream = createFrameStream({ process });
    const results = stream.results();
    for (const frame of [10, 11, 12, 13, 14]) stream.push(frame);
    await tick();
    expect(calls.map((call) => call.frame)).toEqual([10]); // one running, never two
    calls[0]!.finish(100);
    await tick();
    expect(calls.map((call) => call.frame)).toEqual([10, 14]); // 11, 12, 13 were replaced
    calls[1]!.finish(140);
    const outputs = await take(results, 2);
    expect(outputs.map((result) => [result.index, 'output' in result ? result.output : null])).toEqual([
      [0, 100],
      [4, 140],
    ]);
    expect(stream.stats).toMatchObject({ pushed: 5, processed: 2, dropped: 3, failed: 0 });
    await stream.dispose();
  });

  it('holds processing back while results wait untaken, so no queue grows when the consumer falls behind', async () => {
    const { calls, process } = controlledProcessor();
    const stream = createFrameStream({ process });
    const results = stream.results();
    // Nobody reads for a while: a live source keeps pushing, the processor finishes what it starts.
    for (let frame = 0; frame < 50; frame += 1) {
      stream.push(frame);
      await tick();
      calls.at(-1)!.finish(frame * 10);
      await tick();
    }
    // One result waiting plus one processed behind it, then nothing starts: 2 calls, not 50.
    expect(calls.map((call) => call.frame)).toEqual([0, 1]);
    expect(stream.stats).toMatchObject({ pushed: 50, processed: 2, dropped: 47 });
    // Taking a result makes room: the newest waiting frame (49) starts, the older ones were dropped.
    expect((await take(results, 1)).map((result) => result.index)).toEqual([0]);
    await tick();
    expect(calls.map((call) => call.frame)).toEqual([0, 1, 49]);
    calls[2]!.finish(490);
    expect((await take(results, 2)).map((result) => result.index)).toEqual([1, 49]);
    await stream.dispose();
  });

  it('reports a failing frame as a result and goes on with the next', async () => {
    const stream = createFrameStream({
      process: async (frame: number) => {
        if (frame === 2) throw new Error('bad frame');
        return frame * 10;
      },
    });
    const results = stream.results();
    const seen: FrameResult<number>[] = [];
    for (const frame of [1, 2, 3]) {
      stream.push(frame);
      seen.push(...(await take(results, 1)));
    }
    expect(seen.map((result) => ('output' in result ? result.output : (result.error as Error).message))).toEqual([10, 'bad frame', 30]);
    expect(stream.stats).toMatchObject({ processed: 2, failed: 1 });
    await stream.dispose();
  });

  it('times each frame and measures fps with the given clock', async () => {
    let clock = 0;
    const stream = createFrameStream({
      now: () => clock,
      process: async (frame: number) => {
        clock += 40; // each frame takes 40 ms
        return frame;
      },
    });
    const results = stream.results();
    const timings = [];
    for (const frame of [0, 1, 2, 3]) {
      stream.push(frame); // processing starts at once: no wait
      timings.push(...(await take(results, 1)));
      clock += 10; // 10 ms between a result and the next frame
    }
    expect(timings[0]!.timing).toEqual({ index: 0, waitMs: 0, processMs: 40 });
    expect(stream.stats.fps).toBeCloseTo(1000 / 50, 6); // a frame every 40 + 10 ms
    expect(stream.stats.lastTiming).toEqual({ index: 3, waitMs: 0, processMs: 40 });
    await stream.dispose();
  });

  it('on dispose drops the waiting frame, lets the running one finish and ends the results', async () => {
    const { calls, process } = controlledProcessor();
    const stream = createFrameStream({ process });
    const results = stream.results();
    stream.push(1);
    stream.push(2);
    await tick();
    const disposed = stream.dispose();
    expect(() => stream.push(3)).toThrow(DisposedError);
    calls[0]!.finish(10);
    await disposed;
    expect(calls).toHaveLength(1);
    const rest = await take(results, 5);
    expect(rest.map((result) => result.index)).toEqual([0]);
    expect(stream.stats).toMatchObject({ processed: 1, dropped: 1 });
    expect((await results.next()).done).toBe(true);
  });

  it('with overlap hands the next frame over while one is in flight (two at most), keeps the newest waiting, and delivers in order', async () => {
    const { calls, process } = controlledProcessor();
    const stream = createFrameStream({ process, overlap: true });
    const results = stream.results();
    for (const frame of [10, 11, 12, 13]) stream.push(frame);
    await tick();
    expect(calls.map((call) => call.frame)).toEqual([10, 11]); // two in flight; 13 waits, 12 was replaced
    // The second finishes first: nothing is delivered before the first, and no third starts yet.
    calls[1]!.finish(110);
    await tick();
    expect(calls).toHaveLength(2);
    calls[0]!.finish(100);
    await tick();
    expect(calls.map((call) => call.frame)).toEqual([10, 11, 13]);
    calls[2]!.fail(new Error('bad frame'));
    const outputs = await take(results, 3);
    expect(outputs.map((result) => [result.index, 'output' in result ? result.output : (result.error as Error).message])).toEqual([
      [0, 100],
      [1, 110],
      [3, 'bad frame'],
    ]);
    expect(stream.stats).toMatchObject({ pushed: 4, processed: 2, failed: 1, dropped: 1 });
    await stream.dispose();
    expect((await results.next()).done).toBe(true);
  });

  it('with overlap, dispose lets both frames in flight finish and delivers them', async () => {
    const { calls, process } = controlledProcessor();
    const stream = createFrameStream({ process, overlap: true });
    const results = stream.results();
    for (const frame of [1, 2, 3]) stream.push(frame);
    await tick();
    const disposed = stream.dispose();
    calls[0]!.finish(10);
    calls[1]!.finish(20);
    await disposed;
    expect(calls).toHaveLength(2);
    expect((await take(results, 5)).map((result) => result.index)).toEqual([0, 1]);
    expect(stream.stats).toMatchObject({ processed: 2, dropped: 1 });
  });
});
