/**
 * Events the core publishes for whoever wants to count them (the node daemon's metrics), through
 * node:diagnostics_channel: publishing costs nothing when nobody subscribes, and the core never
 * depends on the metrics code.
 */
import { channel } from 'node:diagnostics_channel';

/** A compare-and-swap round lost to a concurrent writer: `{ operation }`. */
export const casConflicts = channel('calico.ipam.cas-conflict');
/** A compare-and-swap loop that gave up: `{ operation }`. */
export const casExhausted = channel('calico.ipam.cas-exhausted');
/** An etcd call that failed: `{ kind: 'unavailable' | 'request' }`. */
export const etcdErrors = channel('calico.etcd.error');
/** A record skipped by a reader because it is malformed: `{ key, error }`. */
export const malformedRecords = channel('calico.datastore.malformed');
/** A CNI ADD finished: how long each of its phases took, in seconds: `{ phases }`. */
export const addPhases = channel('calico.cni.add-phases');

/** Times the phases of one operation; publishes them when done, at no cost when nobody listens. */
export class PhaseTimer {
  private readonly phases: Record<string, number> = {};
  private last = process.hrtime.bigint();

  /** Ends the current phase under `name` and starts the next. */
  lap(name: string): void {
    const now = process.hrtime.bigint();
    this.phases[name] = (this.phases[name] ?? 0) + Number(now - this.last) / 1e9;
    this.last = now;
  }

  /** Times one of several steps that run at once, apart from the laps. */
  async measure<T>(name: string, step: Promise<T>): Promise<T> {
    const started = process.hrtime.bigint();
    try {
      return await step;
    } finally {
      this.phases[name] = (this.phases[name] ?? 0) + Number(process.hrtime.bigint() - started) / 1e9;
    }
  }

  publish(): void {
    if (addPhases.hasSubscribers) addPhases.publish({ phases: { ...this.phases } });
  }
}
