/**
 * The soak's faults, one at a time, each drawn from the seed with its target and duration, then
 * undone; the time from its end until the checker finds every settled invariant holding again is
 * its recovery. Kinds not yet here (issue 19): the leader cut off, a plugin killed mid-command,
 * dockerd restarted, an agent's link to etcd dropped.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Random } from '../sim/random';
import type { SoakWorld } from './world';

export const FAULT_KINDS = ['etcd-member-kill', 'etcd-stop', 'daemon-kill', 'bird-kill', 'malformed-record'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface Fault {
  readonly kind: FaultKind;
  readonly detail: string;
  /** Runs the fault to its end (undone). */
  run(): Promise<void>;
}

/** The next fault, drawn now (so that the sequence follows the seed alone). */
/** `planted`: keys of malformed records while they stand (the checker does not count them). */
export function drawFault(world: SoakWorld, random: Random, planted: Set<string>): Fault {
  const kinds = FAULT_KINDS.filter((k) => k !== 'bird-kill' || world.routing === 'bird');
  const kind = random.pick(kinds);
  const members = world.world.fabric.members;
  switch (kind) {
    case 'etcd-member-kill': {
      const member = random.pick(members);
      const downMs = random.between(2000, 8000);
      return {
        kind,
        detail: `etcd member ${members.indexOf(member)} killed for ${downMs} ms`,
        run: async () => {
          await member.stop('SIGKILL');
          await sleep(downMs);
          await member.resume();
        },
      };
    }
    case 'etcd-stop':
      return {
        kind,
        detail: 'every etcd member stopped (SIGSTOP) for 10 s',
        run: async () => {
          for (const member of members) member.freeze();
          await sleep(10_000);
          for (const member of members) member.thaw();
        },
      };
    case 'daemon-kill': {
      const agent = random.pick(world.agents);
      const downMs = random.between(500, 3000);
      return {
        kind,
        detail: `the daemon of ${agent.name} killed for ${downMs} ms`,
        run: async () => {
          await agent.stopDaemon('SIGKILL');
          await sleep(downMs);
          await agent.startDaemon();
        },
      };
    }
    case 'bird-kill': {
      const agent = random.pick(world.agents);
      return {
        kind,
        detail: `BIRD of ${agent.name} killed`,
        run: async () => {
          const pid = agent.birdPid();
          if (pid !== undefined) process.kill(pid, 'SIGKILL');
          // The daemon starts it again; graceful restart keeps the routes meanwhile.
          await sleep(3000);
        },
      };
    }
    case 'malformed-record': {
      const which = random.pick(['endpoint', 'block', 'policy'] as const);
      const garbage = random.pick(['{', '{"kind":"WorkloadEndpoint","spec":{"ipNetworks":"10.210.0.1/32"}}', '[]', 'null', '\u0000\u00ff']);
      const keys = world.ds.keys;
      const key = which === 'endpoint' ? `${keys.resourcePrefix('WorkloadEndpoint', 'soak')}garbage-${random.int(1000)}`
        : which === 'block' ? `${keys.blockPrefix(4)}10-210-255-${random.int(4) * 64}-26`
          : `${keys.resourcePrefix('GlobalNetworkPolicy')}garbage-${random.int(1000)}`;
      return {
        kind,
        detail: `malformed ${which} record written at ${key}`,
        run: async () => {
          planted.add(key);
          await world.ds.kv.txn([{ key, put: garbage }]);
          await sleep(5000);
          await world.ds.kv.txn([{ key, delete: true }]);
          planted.delete(key);
        },
      };
    }
  }
}
