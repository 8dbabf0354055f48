/**
 * The bytes of unanswered requests a daemon holds, across all its sockets, bounded as a whole: each
 * request may hold up to MAX_BODY_BYTES, but a thousand clients each sending most of that and never
 * finishing would hold a gigabyte. When the whole is over its limit, the requests holding the most
 * are dropped until it fits: a misbehaving client loses its connection, while the small requests of
 * the plugins and Docker are the last ever touched.
 */
export class RequestBudget {
  private readonly held = new Map<object, { bytes: number; drop: () => void }>();
  private total = 0;

  constructor(private readonly limit: number) {}

  /** `owner` (a connection) holds `bytes` more; `drop` ends it if it must go. */
  add(owner: object, bytes: number, drop: () => void): void {
    const entry = this.held.get(owner) ?? { bytes: 0, drop };
    entry.bytes += bytes;
    this.held.set(owner, entry);
    this.total += bytes;
    while (this.total > this.limit) {
      let largest: [object, { bytes: number; drop: () => void }] | undefined;
      for (const candidate of this.held) if (!largest || candidate[1].bytes > largest[1].bytes) largest = candidate;
      this.release(largest![0]);
      largest![1].drop();
    }
  }

  /** `owner`'s request was answered, or it went: what it held is free. */
  release(owner: object): void {
    const entry = this.held.get(owner);
    if (!entry) return;
    this.total -= entry.bytes;
    this.held.delete(owner);
  }
}
