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
/** A CNI command finished: how long each of its phases took, in seconds: `{ command, phases }`. */
export const commandPhases = channel('calico.cni.command-phases');

/** Times the phases of one command; publishes them when done, at no cost when nobody listens. */
export class PhaseTimer {
  private readonly phases: Record<string, number> = {};
  private last = process.hrtime.bigint();

  constructor(private readonly command: string) {}

  /** Ends the current phase under `name` and starts the next. */
  lap(name: string): void {
    const now = process.hrtime.bigint();
    this.phases[name] = (this.phases[name] ?? 0) + Number(now - this.last) / 1e9;
    this.last = now;
  }

  /**
   * Times one of several steps that run at once, apart from the laps: from its start (its
   * synchronous part, such as a fork, included) to its end.
   */
  async measure<T>(name: string, step: () => Promise<T>): Promise<T> {
    const started = process.hrtime.bigint();
    try {
      return await step();
    } finally {
      this.phases[name] = (this.phases[name] ?? 0) + Number(process.hrtime.bigint() - started) / 1e9;
    }
  }

  publish(): void {
    if (commandPhases.hasSubscribers) commandPhases.publish({ command: this.command, phases: { ...this.phases } });
  }
}
