import { describe, expect, it } from 'vitest';
import { addInputNoise, createSequentialBatch, createStreamBatch, type CfgType, type StepConstants, type UnetRequest } from './stream-batch.js';

/** Constants that make the LCM step the identity (α = 1, β = 0, c_out = 1, c_skip = 0). */
function identityConstants(n: number): StepConstants {
  return {
    timesteps: Array.from({ length: n }, (_, step) => 999 - 100 * step),
    alpha: new Float32Array(n).fill(1),
    beta: new Float32Array(n).fill(0),
    cSkip: new Float32Array(n).fill(0),
    cOut: new Float32Array(n).fill(1),
  };
}

const zeroUnet = async (request: UnetRequest) => new Float32Array(request.latents.length);

describe('stream batch', () => {
  it('carries every one of f frames through all n steps, in order (the original keeps only the last)', async () => {
    const n = 3;
    const f = 2;
    const size = 2;
    const batch = createStreamBatch({
      constants: identityConstants(n),
      frameBufferSize: f,
      slotSize: size,
      cfgType: 'none',
      guidanceScale: 1,
      delta: 1,
      addNoise: false,
      initNoise: new Float32Array(n * f * size),
    });
    const outputs: number[][] = [];
    for (let call = 0; call < 5; call += 1) {
      // Frame j of call c holds the values 10c + j.
      const input = Float32Array.from({ length: f * size }, (_, index) => 10 * call + Math.floor(index / size));
      outputs.push(Array.from(await batch.step(input, zeroUnet)));
    }
    // After n − 1 = 2 warm-up calls, each call returns the two frames pushed n − 1 calls before it.
    expect(outputs.slice(2)).toEqual([
      [0, 0, 1, 1],
      [10, 10, 11, 11],
      [20, 20, 21, 21],
    ]);
    expect(batch.calls).toBe(5);
  });

  it('calls the UNet with one timestep per slot, stepping every f slots', async () => {
    const requests: UnetRequest[] = [];
    const batch = createStreamBatch({
      constants: identityConstants(2),
      frameBufferSize: 2,
      slotSize: 1,
      cfgType: 'none',
      guidanceScale: 1,
      delta: 1,
      addNoise: true,
      initNoise: new Float32Array(4),
    });
    await batch.step(new Float32Array(2), async (request) => {
      requests.push(request);
      return new Float32Array(request.latents.length);
    });
    expect(Array.from(requests[0]!.timesteps)).toEqual([999, 999, 899, 899]);
  });

  const batchFor = async (cfgType: CfgType, guidanceScale: number) => {
    const requests: UnetRequest[] = [];
    const batch = createStreamBatch({
      constants: identityConstants(2),
      frameBufferSize: 2,
      slotSize: 1,
      cfgType,
      guidanceScale,
      delta: 1,
      addNoise: true,
      initNoise: new Float32Array(4),
    });
    // Conditional rows predict 1, unconditional rows 0.
    const output = await batch.step(Float32Array.from([5, 6]), async (request) => {
      requests.push(request);
      return Float32Array.from(request.unconditional, (unconditional) => (unconditional ? 0 : 1));
    });
    return { request: requests[0]!, output };
  };

  it('builds the UNet batch each cfg type needs: B, B, B + f, 2B; only B when guidance <= 1', async () => {
    expect((await batchFor('none', 2)).request.batch).toBe(4);
    expect((await batchFor('self', 2)).request.batch).toBe(4);
    const initialize = (await batchFor('initialize', 2)).request;
    expect(initialize.batch).toBe(6);
    expect(initialize.unconditional).toEqual([true, true, false, false, false, false]);
    expect(Array.from(initialize.timesteps)).toEqual([999, 999, 999, 999, 899, 899]);
    const full = (await batchFor('full', 2)).request;
    expect(full.batch).toBe(8);
    expect(full.unconditional).toEqual([true, true, true, true, false, false, false, false]);
    for (const cfgType of ['self', 'initialize', 'full'] as const) expect((await batchFor(cfgType, 1)).request.batch).toBe(4);
  });

  it('applies ε = ε_u + γ(ε_c − ε_u) with the real unconditional pass under full guidance', async () => {
    // Identity step with β = 1 instead: x̂0 = x − ε, so the output shows ε directly.
    const constants = { ...identityConstants(1), beta: Float32Array.from([1]) };
    const make = (cfgType: CfgType) =>
      createStreamBatch({ constants, frameBufferSize: 1, slotSize: 1, cfgType, guidanceScale: 3, delta: 0.5, addNoise: true, initNoise: Float32Array.from([0.25]) });
    const unet = async (request: UnetRequest) => Float32Array.from(request.unconditional, (unconditional) => (unconditional ? 0.5 : 1));
    // full: ε = 0.5 + 3·(1 − 0.5) = 2.
    expect(Array.from(await make('full').step(Float32Array.from([10]), unet))).toEqual([8]);
    // self: ε_u = δ·stock noise = 0 on the first frame, so ε = 3·1 = 3.
    expect(Array.from(await make('self').step(Float32Array.from([10]), unet))).toEqual([7]);
    // none: ε = ε_c = 1.
    expect(Array.from(await make('none').step(Float32Array.from([10]), unet))).toEqual([9]);
  });

  it('noises new latents with the first step and the first f noise slots', () => {
    const constants = { ...identityConstants(2), alpha: Float32Array.from([0.5, 0.9]), beta: Float32Array.from([2, 0.1]) };
    const noised = addInputNoise({ constants, initNoise: Float32Array.from([1, 2, 3, 4]), frameBufferSize: 2, slotSize: 1 }, Float32Array.from([10, 20]));
    expect(Array.from(noised)).toEqual([0.5 * 10 + 2 * 1, 0.5 * 20 + 2 * 2]);
  });

  it('without a denoising batch, runs n UNet calls per call, each on f slots, with no warm-up', async () => {
    const requests: UnetRequest[] = [];
    let noiseDraws = 0;
    const sequential = createSequentialBatch({
      constants: identityConstants(3),
      frameBufferSize: 2,
      slotSize: 1,
      cfgType: 'none',
      guidanceScale: 1,
      delta: 1,
      addNoise: true,
      initNoise: new Float32Array(2),
      stepNoise: () => {
        noiseDraws += 1;
        return new Float32Array(2);
      },
    });
    expect(sequential.warm).toBe(true);
    const output = await sequential.step(Float32Array.from([4, 5]), async (request) => {
      requests.push(request);
      return new Float32Array(request.latents.length);
    });
    expect(Array.from(output)).toEqual([4, 5]);
    expect(requests.map((request) => [request.batch, ...request.timesteps])).toEqual([
      [2, 999, 999],
      [2, 899, 899],
      [2, 799, 799],
    ]);
    expect(noiseDraws).toBe(2); // fresh noise between steps, none after the last
  });

  it('names bad settings', () => {
    expect(() =>
      createStreamBatch({ constants: identityConstants(2), frameBufferSize: 0, slotSize: 1, cfgType: 'none', guidanceScale: 1, delta: 1, addNoise: true, initNoise: new Float32Array(0) }),
    ).toThrow('frame_buffer_size: expected an integer >= 1, got 0');
    expect(() =>
      createStreamBatch({ constants: identityConstants(2), frameBufferSize: 1, slotSize: 4, cfgType: 'none', guidanceScale: 1, delta: 1, addNoise: true, initNoise: new Float32Array(4) }),
    ).toThrow(/init_noise: expected 8 values/);
  });
});
