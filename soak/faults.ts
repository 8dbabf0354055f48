/**
 * The soak's faults, each drawn from the seed with its target and duration, then undone. Kinds
 * come in rounds (every kind once per round, in an order drawn from the seed), so that a run of
 * N rounds has every kind N times.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { EtcdServer } from '../sim/etcd';
import type { Random } from '../sim/random';
import type { Workloads } from './workload';
import type { SoakWorld } from './world';

export const FAULT_KINDS = [
  'etcd-member-kill', 'etcd-leader-cut', 'etcd-stop', 'daemon-kill', 'plugin-kill', 'bird-kill', 'dockerd-restart', 'agent-etcd-cut', 'malformed-record',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface Fault {
  readonly kind: FaultKind;
  readonly detail: string;
  /** Runs the fault to its end (undone); false when it found nothing to act on (not counted). */
  run(): Promise<boolean>;
}

export interface FaultContext {
  readonly world: SoakWorld;
  readonly workloads: Workloads;
  /** Keys of malformed records while they stand (the checker does not count them). */
  readonly planted: Set<string>;
}

/** The kinds this world can have (BIRD only when it routes with BIRD). */
export function faultKinds(world: SoakWorld): FaultKind[] {
  return FAULT_KINDS.filter((k) => k !== 'bird-kill' || world.routing === 'bird');
}

/** The next fault of `kind`, drawn now (so that the sequence follows the seed alone). */
export function drawFault(kind: FaultKind, { world, workloads, planted }: FaultContext, random: Random): Fault {
  const { fabric } = world.world;
  const members = fabric.members;
  switch (kind) {
    case 'etcd-member-kill': {
      const member = random.pick(members);
      const downMs = random.between(2000, 8000);
      return outage(kind, `etcd member ${members.indexOf(member)} killed for ${downMs} ms`, downMs, () => member.stop('SIGKILL'), () => member.resume());
    }
    case 'etcd-leader-cut': {
      const cutMs = random.between(10_000, 20_000);
      return {
        kind,
        detail: `the etcd leader cut off from the members and the agents for ${cutMs} ms`,
        run: async () => {
          const leader = await leaderOf(members);
          if (!leader) return false;
          await fabric.cutOff(leader);
          await sleep(cutMs);
          await fabric.reconnect(leader);
          return true;
        },
      };
    }
    case 'etcd-stop':
      return outage(kind, 'every etcd member stopped (SIGSTOP) for 10 s', 10_000,
        () => members.forEach((member) => member.freeze()),
        () => members.forEach((member) => member.thaw()));
    case 'daemon-kill': {
      const agent = random.pick(world.agents);
      const downMs = random.between(500, 3000);
      return outage(kind, `the daemon of ${agent.name} killed for ${downMs} ms`, downMs, () => agent.stopDaemon('SIGKILL'), () => agent.startDaemon());
    }
    case 'plugin-kill': {
      const agent = random.pick(world.agents);
      const command = random.pick(['ADD', 'DEL'] as const);
      // An ADD or a DEL takes ~100 ms through the daemon, more alone: the kill lands within it
      // (one that finished first does not count).
      const afterMs = random.between(5, 90);
      return {
        kind,
        detail: `the next CNI ${command} on ${agent.name} SIGKILLed ${afterMs} ms after its start`,
        run: () => agent.mesos.killNextPlugin(command, afterMs, 15_000),
      };
    }
    case 'bird-kill': {
      const agent = random.pick(world.agents);
      return {
        kind,
        detail: `BIRD of ${agent.name} killed`,
        run: async () => {
          const pid = agent.birdPid();
          if (pid === undefined) return false;
          process.kill(pid, 'SIGKILL');
          // The daemon starts it again; graceful restart keeps the routes meanwhile.
          await sleep(3000);
          return true;
        },
      };
    }
    case 'dockerd-restart': {
      const agent = random.pick(world.agents.filter((a) => a.docker));
      return {
        kind,
        detail: `dockerd of ${agent.name} restarted`,
        run: async () => {
          // Its containers stop with it; the scheduler sees them lost and removes them.
          workloads.lose((w) => w.agent === agent && w.kind === 'docker');
          await agent.docker!.restartDockerd();
          return true;
        },
      };
    }
    case 'agent-etcd-cut': {
      const agent = random.pick(world.agents);
      return outage(kind, `${agent.name} cut off from etcd for 20 s`, 20_000, () => fabric.cutFromEtcd(agent.host), () => fabric.letThrough(agent.host));
    }
    case 'malformed-record': {
      const which = random.pick(['endpoint', 'block', 'policy'] as const);
      const garbage = random.pick(['{', '{"kind":"WorkloadEndpoint","spec":{"ipNetworks":"10.210.0.1/32"}}', '[]', 'null', '\u0000\u00ff']);
      const keys = world.ds.keys;
      const key = which === 'endpoint' ? `${keys.resourcePrefix('WorkloadEndpoint', 'soak')}garbage-${random.int(1000)}`
        : which === 'block' ? `${keys.blockPrefix(4)}10-210-255-${random.int(4) * 64}-26`
          : `${keys.resourcePrefix('GlobalNetworkPolicy')}garbage-${random.int(1000)}`;
      // Written and removed however long etcd is away (another fault may have it).
      return outage(kind, `malformed ${which} record written at ${key}`, 5000,
        async () => {
          planted.add(key);
          await untilDone(() => world.ds.kv.txn([{ key, put: garbage }]));
        },
        async () => {
          await untilDone(() => world.ds.kv.txn([{ key, delete: true }]));
          planted.delete(key);
        });
    }
  }
}

/** A fault that takes something away (`take`), waits `ms`, and gives it back (`give`). */
function outage(kind: FaultKind, detail: string, ms: number, take: () => unknown, give: () => unknown): Fault {
  return {
    kind,
    detail,
    run: async () => {
      await take();
      await sleep(ms);
      await give();
      return true;
    },
  };
}

/** Tries `step` every second until it works (two minutes at most, then its error is thrown). */
async function untilDone(step: () => Promise<unknown>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await step();
      return;
    } catch (err) {
      if (attempt >= 120) throw err;
      await sleep(1000);
    }
  }
}

/** The member that leads now, asked for up to 10 s (an election may be under way). */
async function leaderOf(members: readonly EtcdServer[]): Promise<EtcdServer | undefined> {
  for (let i = 0; i < 20; i++) {
    const leading = await Promise.all(members.map((m) => m.isLeader()));
    const index = leading.indexOf(true);
    if (index >= 0) return members[index];
    await sleep(500);
  }
  return undefined;
}
