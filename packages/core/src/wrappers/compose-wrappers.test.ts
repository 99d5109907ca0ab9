import { describe, expect, it } from 'vitest';
import type { LoadedModel } from '../model-folder/load-model.js';
import type { Runtime } from '../runtime/runtime.js';
import { createMockWrapper } from '../test/mock-wrapper.js';
import { hiddenStatesMemo, wrapperContributions } from './compose-wrappers.js';
import type { WrapperUnetCallV1 } from './unet-wrapper-v1.js';

const width = 2;
const pipeline = {
  model: { capabilities: { textEmbeddingWidth: width } } as unknown as LoadedModel,
  runtime: {} as Runtime,
  width: 8,
  height: 8,
  frameBufferSize: 1,
  latentShape: [1, 1, 1] as const,
};

function call(batch: number): WrapperUnetCallV1 {
  const textEmbeddings = new Float32Array(batch * 77 * width).map((_, index) => -1 - Math.floor(index / (77 * width)));
  return {
    latents: new Float32Array(batch),
    batch,
    timesteps: new Float32Array(batch),
    steps: new Array<number>(batch).fill(0),
    stepCount: 1,
    unconditional: new Array<boolean>(batch).fill(false),
    textEmbeddings,
    frame: { input: undefined, images: new Map(), previousOutput: () => undefined },
  };
}

describe('wrapperContributions', () => {
  it('appends each wrapper’s tokens after the 77 text tokens, in wrapper order, row by row', async () => {
    const first = createMockWrapper({ prefix: 'first', extraTokens: 2, token: 5, unetInputs: ['a'] });
    const second = createMockWrapper({ prefix: 'second', extraTokens: 1, token: 7, unetInputs: ['b'], residual: 3 });
    await first.attach(pipeline);
    await second.attach(pipeline);
    const { inputs, encoderHiddenStates, tokens } = await wrapperContributions([first, second], call(2), width);
    expect(tokens).toBe(80);
    const row = (entry: number) => Array.from(encoderHiddenStates.subarray(entry * 80 * width, (entry + 1) * 80 * width));
    for (const entry of [0, 1]) {
      const text = new Array<number>(77 * width).fill(-1 - entry);
      expect(row(entry)).toEqual([...text, 5, 5, 5, 5, 7, 7]);
    }
    expect(Object.keys(inputs)).toEqual(['a', 'b']);
    expect(inputs.b).toMatchObject({ dims: [2, 1, 1, 1], data: new Float32Array([3, 3]) });
  });

  it('with a memo, merges the same text and token arrays once; new arrays are merged again', async () => {
    const tokens = new Float32Array([4, 4, 4, 4]);
    const steady = { ...createMockWrapper({ extraTokens: 1 }), unetCall: async () => ({ inputs: {}, tokens }) };
    await steady.attach(pipeline);
    const memo = hiddenStatesMemo();
    const given = call(2);
    const first = await wrapperContributions([steady], given, width, memo);
    const again = await wrapperContributions([steady], { ...given }, width, memo);
    expect(again.encoderHiddenStates).toBe(first.encoderHiddenStates);
    expect(Array.from(first.encoderHiddenStates.subarray(77 * width, 78 * width))).toEqual([4, 4]);
    const otherText = await wrapperContributions([steady], call(2), width, memo);
    expect(otherText.encoderHiddenStates).not.toBe(first.encoderHiddenStates);
    expect(Array.from(otherText.encoderHiddenStates)).toEqual(Array.from(first.encoderHiddenStates));
  });

  it('passes the text embeddings through untouched when no wrapper adds tokens', async () => {
    const mock = createMockWrapper();
    await mock.attach(pipeline);
    const given = call(1);
    const { encoderHiddenStates, tokens } = await wrapperContributions([mock], given, width);
    expect(encoderHiddenStates).toBe(given.textEmbeddings);
    expect(tokens).toBe(77);
  });

  it('refuses a contribution that breaks the wrapper’s own declaration, naming the wrapper', async () => {
    const liar = { ...createMockWrapper({ unetInputs: ['a'] }), unetInputs: ['a', 'c'] };
    await liar.attach(pipeline);
    await expect(wrapperContributions([liar], call(1), width)).rejects.toThrow(/wrappers\[0\] \(mock\)\.unetCall\(\)\.inputs: expected exactly its unetInputs \(a, c\), got \["a"\]/);
    const short = { ...createMockWrapper({ extraTokens: 1 }), extraTokens: 2 };
    await short.attach(pipeline);
    await expect(wrapperContributions([short], call(1), width)).rejects.toThrow(/tokens: expected \[1, 2, 2\] = 4 values, got "2 values"/);
  });
});
