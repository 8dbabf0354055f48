/**
 * What the soak's faults did: which are on, when the last one ended (the checker's settling
 * clock), how many of each kind happened, and each kind's recovery time: from a fault's end
 * until the checker first finds every workload that was live before that end whole again. Only
 * a fault that ran alone gets a recovery time; one that overlapped another, or that another
 * followed before it recovered, is counted but not timed.
 */
import type { Fault, FaultKind } from './faults';

interface KindLog {
  count: number;
  readonly recoveryMs: number[];
}

export class FaultLog {
  private readonly on = new Set<{ overlapped: boolean }>();
  private lastEnd = 0;
  private readonly kinds = new Map<FaultKind, KindLog>();
  private pending: { kind: FaultKind; endedAt: number } | undefined;

  constructor(private readonly now: () => number) {}

  /** Runs `fault` to its end, keeping the books; rethrows what it throws (it still counts). */
  async run(fault: Fault): Promise<void> {
    const entry = { overlapped: this.on.size > 0 };
    for (const other of this.on) other.overlapped = true;
    this.on.add(entry);
    // Whatever awaited recovery is confounded by this fault from now on.
    this.pending = undefined;
    let happened = true;
    try {
      happened = await fault.run();
    } finally {
      this.on.delete(entry);
      const at = this.now();
      if (this.on.size === 0) this.lastEnd = at;
      if (happened) {
        const log = this.kinds.get(fault.kind) ?? { count: 0, recoveryMs: [] };
        log.count++;
        this.kinds.set(fault.kind, log);
        if (!entry.overlapped) this.pending = { kind: fault.kind, endedAt: at };
      }
    }
  }

  active(): number {
    return this.on.size;
  }

  /** When the last fault ended (the soak's clock); Infinity while one is on. */
  quietSince(): number {
    return this.on.size > 0 ? Infinity : this.lastEnd;
  }

  /** The end of the fault whose recovery is awaited, if one is. */
  awaitingRecovery(): number | undefined {
    return this.pending?.endedAt;
  }

  /**
   * The checker found everything whole again, in a check made for the fault that ended at
   * `endedAt`: that fault's recovery time is now (unless another fault has taken its place).
   */
  recovered(endedAt: number): void {
    if (this.pending?.endedAt !== endedAt) return;
    this.kinds.get(this.pending.kind)!.recoveryMs.push(Math.round(this.now() - this.pending.endedAt));
    this.pending = undefined;
  }

  total(): number {
    return [...this.kinds.values()].reduce((n, k) => n + k.count, 0);
  }

  counts(): Record<string, number> {
    return Object.fromEntries([...this.kinds].map(([kind, log]) => [kind, log.count]));
  }

  /** Per kind: how many recoveries were timed, their median and their longest (ms). */
  recoveries(): Record<string, { timed: number; p50: number | null; max: number | null }> {
    return Object.fromEntries([...this.kinds].map(([kind, { recoveryMs }]) => {
      const sorted = [...recoveryMs].sort((a, b) => a - b);
      return [kind, { timed: sorted.length, p50: sorted.length ? sorted[Math.floor((sorted.length - 1) / 2)]! : null, max: sorted.at(-1) ?? null }];
    }));
  }
}
