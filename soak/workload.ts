/**
 * The soak's tasks: Mesos CNI tasks, Docker containers and net-modules tasks started and stopped
 * on the agents, as their runtimes do it. Every workload's operations run one after another (a
 * stop waits for its start); a start that fails is cleaned up as its runtime would (DEL, `docker
 * rm`, release and cleanup), and a cleanup that fails is tried again until it works, as Mesos
 * does when it recovers. The registry knows which workloads are live: those the checker holds to
 * the invariants.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Random } from '../sim/random';
import type { SoakAgent, NetworkName, SoakWorld } from './world';

export type WorkloadKind = 'cni' | 'docker' | 'netmodules';
export type WorkloadState = 'starting' | 'live' | 'stopping' | 'gone';

export interface Workload {
  readonly id: string;
  readonly kind: WorkloadKind;
  readonly agent: SoakAgent;
  readonly network: NetworkName;
  state: WorkloadState;
  /** Its IPv4 addresses once started. */
  ips: string[];
  /** When it became live (ms, the soak's clock). */
  liveSince: number;
}

export interface OperationOutcome {
  readonly kind: string;
  readonly ok: boolean;
  readonly ms: number;
  readonly detail?: string;
}

/** How long a cleanup is retried before the soak reports it (a workload it could not remove). */
const CLEANUP_RETRY_MS = 1000;

export class Workloads {
  private readonly all = new Map<string, Workload>();
  /** Each workload's operations, one after another. */
  private readonly chains = new Map<string, Promise<void>>();

  constructor(
    private readonly world: SoakWorld,
    private readonly record: (outcome: OperationOutcome) => void,
    private readonly now: () => number,
    private readonly random: Random,
    private readonly log: (line: string) => void,
  ) {}

  live(): Workload[] {
    return [...this.all.values()].filter((w) => w.state === 'live');
  }

  /** Starts a workload in the background; it is in the registry at once. */
  start(kind: WorkloadKind, agent: SoakAgent, network: NetworkName): Workload {
    const workload: Workload = { id: kind === 'docker' ? `soak-${randomUUID().slice(0, 12)}` : randomUUID(), kind, agent, network, state: 'starting', ips: [], liveSince: 0 };
    this.all.set(workload.id, workload);
    this.then(workload, async () => {
      const started = this.now();
      const outcome = await this.launch(workload).then((ips) => ({ ips }), (err: unknown) => ({ error: String((err as Error).message ?? err) }));
      this.record({ kind: `${kind}-start`, ok: 'ips' in outcome, ms: this.now() - started, ...('error' in outcome ? { detail: outcome.error } : {}) });
      if ('ips' in outcome) {
        workload.ips = outcome.ips;
        if (workload.state === 'starting') {
          workload.state = 'live';
          workload.liveSince = this.now();
        }
      } else {
        workload.state = 'stopping';
        await this.remove(workload, 'failed-start-cleanup');
      }
    });
    return workload;
  }

  /** Stops a workload (after its start, if that is still running). */
  stop(workload: Workload): void {
    // Sometimes a task's namespace is gone before its DEL (an executor that died first). Drawn
    // whatever became of the workload, so that the draws follow the seed alone.
    const netnsGone = this.random.chance(0.2) && workload.kind === 'cni';
    if (workload.state === 'stopping' || workload.state === 'gone') return;
    workload.state = 'stopping';
    this.then(workload, () => this.remove(workload, `${workload.kind}-stop`, netnsGone));
  }

  /**
   * Workloads their runtime stopped by itself (dockerd restarted under them): no longer held to
   * the invariants, and removed as a scheduler does with lost tasks, once the runtime answers.
   */
  lose(which: (workload: Workload) => boolean): void {
    for (const workload of this.all.values()) {
      if (!which(workload) || workload.state === 'stopping' || workload.state === 'gone') continue;
      workload.state = 'stopping';
      this.then(workload, () => this.remove(workload, `${workload.kind}-lost-cleanup`));
    }
  }

  /** Waits for every workload's operations in flight, telling every minute what it waits for. */
  async settled(): Promise<void> {
    while (this.chains.size > 0) {
      const waited = await Promise.race([Promise.all([...this.chains.values()]).then(() => false), sleep(60_000).then(() => true)]);
      if (waited) this.log(`still waiting for ${[...this.chains.keys()].map((id) => `${id} (${this.all.get(id)?.state ?? 'gone'})`).join(', ')}`);
    }
  }

  private then(workload: Workload, step: () => Promise<void>): void {
    const next = (this.chains.get(workload.id) ?? Promise.resolve()).then(step).catch(() => undefined);
    this.chains.set(workload.id, next);
    void next.then(() => {
      if (this.chains.get(workload.id) === next) this.chains.delete(workload.id);
    });
  }

  /** Tries the runtime's cleanup until it works. */
  private async remove(workload: Workload, kind: string, netnsGone = false): Promise<void> {
    // A stop queued behind a start that failed finds it removed already.
    if (workload.state === 'gone') return;
    let failures = 0;
    for (;;) {
      const started = this.now();
      const error = await this.cleanup(workload, netnsGone).then(() => undefined, (err: unknown) => String((err as Error).message ?? err));
      this.record({ kind, ok: error === undefined, ms: this.now() - started, ...(error ? { detail: error } : {}) });
      if (error === undefined) break;
      if (++failures % 30 === 0) this.log(`${kind} of ${workload.kind} ${workload.id} on ${workload.agent.name} failed ${failures} times: ${error.slice(0, 300)}`);
      await sleep(CLEANUP_RETRY_MS);
    }
    workload.state = 'gone';
    this.all.delete(workload.id);
  }

  private async launch(workload: Workload): Promise<string[]> {
    const { agent, network } = workload;
    switch (workload.kind) {
      case 'cni': {
        const launch = await agent.mesos.launch(workload.id, [{ network: this.world.cniNetwork(agent, network), labels: { soak: 'true' } }]);
        const run = launch.runs[0]!;
        if (run.code !== 0) throw new Error(`ADD: ${run.stdout.trim() || run.stderr.trim()}`);
        return [launch.ips[0]!.ip4!.split('/')[0]!];
      }
      case 'docker': {
        await agent.docker!.docker('run', '-d', '--name', workload.id, '--net', network, 'local/busybox', 'sleep', '100000');
        return [await agent.docker!.networkSetting(workload.id, network, 'IPAddress')];
      }
      case 'netmodules': {
        const launched = await agent.netmodules.launch(workload.id, { netgroups: [network], labels: { soak: 'true' } });
        if (launched.error) throw new Error(launched.error);
        return launched.ips;
      }
    }
  }

  private async cleanup(workload: Workload, netnsGone: boolean): Promise<void> {
    const { agent } = workload;
    switch (workload.kind) {
      case 'cni': {
        const runs = await agent.mesos.del(workload.id, { netnsGone });
        const failed = runs.find((r) => r.code !== 0);
        if (failed) throw new Error(`DEL: ${failed.stdout.trim() || failed.stderr.trim()}`);
        await agent.mesos.forget(workload.id);
        return;
      }
      case 'docker':
        await agent.docker!.docker('rm', '-f', workload.id);
        return;
      case 'netmodules': {
        const calls = await agent.netmodules.destroy(workload.id, { keepOnFailure: true });
        const failed = calls.find((c) => c.answer?.error !== null);
        if (failed) throw new Error(`${failed.stdout.trim()}`);
        return;
      }
    }
  }
}
