// MT19937, the 32-bit Mersenne Twister (Matsumoto & Nishimura 1998), seeded like C++'s
// `std::mt19937(seed)` and PyTorch's `at::mt19937` (aten/src/ATen/core/MT19937RNGEngine.h): the
// state is initialised from one 32-bit seed with the 2002 `init_genrand` recurrence and the first
// draw regenerates all 624 words. Written out here (it is the algorithm's definition, ~40 lines)
// rather than taken from npm: torch needs only this exact variant, and its state must be copyable.

const STATE_SIZE = 624;
const SHIFT_SIZE = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;
const INIT_MULTIPLIER = 1812433253;

/**
 * The MT19937 generator of `std::mt19937` / `at::mt19937`: `nextUint32()` returns the same
 * sequence as the C++ engine's `operator()` for the same 32-bit seed.
 */
export class Mt19937 {
  private readonly state = new Uint32Array(STATE_SIZE);
  /** Index of the next state word to temper; `STATE_SIZE` means "regenerate first". */
  private index = STATE_SIZE;

  /** `seed` is used modulo 2^32, as torch does with the low 32 bits of its 64-bit seed. */
  constructor(seed: number) {
    const state = this.state;
    state[0] = seed >>> 0;
    for (let i = 1; i < STATE_SIZE; i += 1) {
      const previous = state[i - 1]!;
      state[i] = Math.imul(INIT_MULTIPLIER, previous ^ (previous >>> 30)) + i;
    }
  }

  /** The next 32-bit output, an integer in [0, 2^32). */
  nextUint32(): number {
    if (this.index >= STATE_SIZE) this.regenerate();
    let y = this.state[this.index]!;
    this.index += 1;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** An independent generator in the same state: both continue with the same outputs. */
  clone(): Mt19937 {
    const copy = new Mt19937(0);
    copy.state.set(this.state);
    copy.index = this.index;
    return copy;
  }

  private regenerate(): void {
    const state = this.state;
    for (let i = 0; i < STATE_SIZE; i += 1) {
      const mixed = (state[i]! & UPPER_MASK) | (state[(i + 1) % STATE_SIZE]! & LOWER_MASK);
      state[i] = state[(i + SHIFT_SIZE) % STATE_SIZE]! ^ (mixed >>> 1) ^ (mixed & 1 ? MATRIX_A : 0);
    }
    this.index = 0;
  }
}
