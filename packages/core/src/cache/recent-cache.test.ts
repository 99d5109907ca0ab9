import { describe, expect, it } from 'vitest';
import { createRecentCache } from './recent-cache.js';

describe('recent cache', () => {
  it('makes each key once, keeps the most recently used, and forgets a failure', async () => {
    const cache = createRecentCache<string>(2);
    const made: string[] = [];
    const get = (key: string) => cache.get(key, async () => (made.push(key), `value of ${key}`));
    expect(await get('a')).toBe('value of a');
    await get('b');
    await get('a'); // cached; now the most recently used
    await get('c'); // evicts b, the least recently used
    await get('a');
    await get('b');
    expect(made).toEqual(['a', 'b', 'c', 'b']);
    expect(cache.size).toBe(2);

    await expect(cache.get('bad', () => Promise.reject(new Error('no')))).rejects.toThrow('no');
    expect(await cache.get('bad', async () => 'second try')).toBe('second try');
    cache.clear();
    expect(cache.size).toBe(0);
  });

  it('does not let an old failure drop a newer value for the same key', async () => {
    const cache = createRecentCache<string>(1);
    let fail!: (error: Error) => void;
    const failing = cache.get('k', () => new Promise((_, reject) => (fail = reject)));
    await cache.get('other', async () => 'evicts k');
    const newer = cache.get('k', async () => 'newer');
    fail(new Error('late'));
    await expect(failing).rejects.toThrow('late');
    expect(await newer).toBe('newer');
    expect(await cache.get('k', async () => 'made again')).toBe('newer');
  });
});
