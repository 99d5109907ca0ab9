/**
 * A cache of promised values that keeps the `size` most recently used keys: prompt embeddings in the
 * pipeline, image embeddings and token blends in the IP-Adapter. A value whose promise rejects is
 * dropped (the next `get` makes it again), and only if it is still the one stored under its key.
 */
export interface RecentCache<Value> {
  /** The value for `key`, made by `make` when it is not cached; marks it most recently used. */
  get(key: string, make: () => Promise<Value>): Promise<Value>;
  clear(): void;
  readonly size: number;
}

export function createRecentCache<Value>(size: number): RecentCache<Value> {
  // Map keeps insertion order: least recently used first.
  const entries = new Map<string, Promise<Value>>();
  return {
    get(key, make) {
      let value = entries.get(key);
      if (value !== undefined) {
        entries.delete(key);
      } else {
        const made = make();
        made.catch(() => {
          if (entries.get(key) === made) entries.delete(key);
        });
        value = made;
        for (const oldest of entries.keys()) {
          if (entries.size < size) break;
          entries.delete(oldest);
        }
      }
      entries.set(key, value);
      return value;
    },
    clear() {
      entries.clear();
    },
    get size() {
      return entries.size;
    },
  };
}
