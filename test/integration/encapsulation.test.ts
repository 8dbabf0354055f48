/**
 * No encapsulation carries a task past policy: the template every encapsulation in
 * shared/routing/encapsulations.ts must pass. A netB task crafts tunnel packets whose inner packet
 * is forged from a netA task's address to another netA task (the outer packet carries the task's own
 * address, so the source check alone would not stop it); a namespace on the fabric that is no Node
 * sends the same. None arrives; real traffic through the tunnel does; the FelixConfiguration field
 * that lets workloads send the encapsulation lets them, and still not into a host's tunnel.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type { Datastore } from '../../shared/datastore';
import { ENCAPSULATIONS, VXLAN_VNI, type Encapsulation } from '../../shared/routing/encapsulations';
import { NodeDaemon } from '../../sim/daemon';
import type { MesosAgent } from '../../sim/mesos-agent';
import { waitFor } from '../../sim/wait';
import { CniWorld } from '../../sim/world';
import { listener, packets } from '../helpers/packets';

interface Task {
  readonly id: string;
  readonly agent: MesosAgent;
  readonly ip: string;
  readonly path: string;
}

/** A host's tunnel end as the datastore records it: its address, and for VXLAN its device's MAC. */
interface HostEnd {
  readonly address: string;
  readonly mac?: string;
}

/**
 * For each encapsulation: how a task (or anyone) crafts one of its packets towards a host, and the
 * pool mode and backend that put it to use. A new encapsulation without these does not type-check.
 */
const KINDS: Record<Encapsulation['name'], {
  readonly pool: Record<string, string>;
  readonly backend: string;
  readonly craft: (from: string, to: HostEnd, innerSrc: string, innerDst: string, port: number, payload: string) => (string | number)[];
  /** Why this machine cannot run it, or undefined. */
  readonly missing: () => string | undefined;
}> = {
  vxlan: {
    pool: { vxlanMode: 'Always' },
    backend: 'vxlan',
    craft: (from, to, innerSrc, innerDst, port, payload) => ['vxlan', from, to.address, VXLAN_VNI, to.mac!, innerSrc, innerDst, port, payload, 5],
    missing: () => undefined,
  },
  ipip: {
    pool: { ipipMode: 'Always' },
    backend: 'static',
    craft: (from, to, innerSrc, innerDst, port, payload) => ['ipip', from, to.address, innerSrc, innerDst, port, payload, 5],
    missing: () => {
      try {
        execFileSync('unshare', ['-n', 'ip', 'link', 'add', 'probe', 'type', 'ipip'], { stdio: 'ignore' });
        return undefined;
      } catch {
        return 'this kernel makes no IPIP devices (CONFIG_NET_IPIP is not set)';
      }
    },
  },
};

let world: CniWorld;
let agents: MesosAgent[];

test.before(async () => {
  world = await CniWorld.create();
  agents = [await world.addAgent(), await world.addAgent()];
});
test.after.always(async () => {
  await world?.destroy();
});

async function cluster(t: ExecutionContext, encapsulation: Encapsulation['name']) {
  const kind = KINDS[encapsulation];
  const prefix = `/encap-${encapsulation}-${randomUUID().slice(0, 8)}`;
  const { ds, ipam } = await world.datastore(prefix);
  await ipam.createPool('pool4', { cidr: '10.170.0.0/16', ...kind.pool });
  const daemons: NodeDaemon[] = [];
  t.teardown(async () => {
    for (const daemon of daemons) await daemon.destroy();
  });
  for (const [i, agent] of agents.entries()) {
    daemons.push(await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.etcd.hostEndpoint, '--etcd-prefix', prefix, '--nodename', `encap-${i}`, '--backend', kind.backend, '--gc-interval', '0', '--metrics-address', '']));
  }
  const launch = async (network: string, i: number): Promise<Task> => {
    const id = randomUUID();
    const launched = await agents[i]!.launch(id, [{ network: world.network(network, prefix, `encap-${i}`, { daemon_socket: daemons[i]!.cniSocket, mtu_file: daemons[i]!.mtuFile }) }]);
    if (launched.runs[0]!.code !== 0) throw new Error(launched.runs[0]!.stdout);
    return { id, agent: agents[i]!, ip: launched.ips[0]!.ip4!.split('/')[0]!, path: agents[i]!.container(id).path };
  };
  const tasks = { a1: await launch('netA', 0), a2: await launch('netA', 1), a3: await launch('netA', 0), b1: await launch('netB', 0), b2: await launch('netB', 0) };
  const endOf = async (i: number): Promise<HostEnd | undefined> => {
    const node = await ds.resources.get('Node', `encap-${i}`);
    const address = node?.spec.bgp?.ipv4Address?.split('/')[0];
    if (!address || (encapsulation === 'vxlan' && !node?.spec.vxlanTunnelMACAddr)) return undefined;
    return { address, mac: node?.spec.vxlanTunnelMACAddr };
  };
  await waitFor('both hosts\' tunnel ends to be recorded', async () => (await endOf(0)) !== undefined && (await endOf(1)) !== undefined, 15_000);
  const ends = [(await endOf(0))!, (await endOf(1))!];
  return { ds, tasks, ends };
}

/** What listeners in `to` hear on `port` while `send` runs. */
async function heardBy(to: readonly Task[], port: number, send: () => Promise<unknown>): Promise<string[]> {
  const listeners = await Promise.all(to.map((task) => listener(task.path, ['listen', port], 3)));
  await send();
  return (await Promise.all(listeners.map((l) => l.heard))).flat().map((h) => h.payload);
}

async function setFelix(ds: Datastore, spec: Record<string, unknown>): Promise<void> {
  const existing = await ds.resources.get('FelixConfiguration', 'default');
  if (existing) await ds.resources.update({ ...existing, spec: spec as never });
  else await ds.resources.create({ kind: 'FelixConfiguration', apiVersion: 'projectcalico.org/v3', metadata: { name: 'default' }, spec: spec as never });
}

for (const encapsulation of ENCAPSULATIONS) {
  const kind = KINDS[encapsulation.name];
  const missing = kind.missing();
  const title = `encapsulation ${encapsulation.name} - a task cannot tunnel a forged packet past policy, to another host's tunnel end or its own; a host takes tunnel packets only from Nodes; real tunnel traffic flows; ${encapsulation.allowFromWorkloads} lets workloads send it`;
  if (missing) {
    test.serial.skip(`${title} (skipped: ${missing})`, () => undefined);
    continue;
  }
  test.serial(title, async (t) => {
    const { ds, tasks, ends } = await cluster(t, encapsulation.name);
    const { a1, a2, a3, b1, b2 } = tasks;
    // As `calicoctl datastore init` sets it on Mesos: workloads reach their host (and its tunnel end).
    await setFelix(ds, { defaultEndpointToHostAction: 'Accept' });
    await waitFor('netA to reach netA through the tunnel', () => a1.agent.container(a1.id).ping(a2.ip), 15_000);

    const attack = (label: string) => heardBy([a2, a3], 7002, () => Promise.all([
      // To the other host's tunnel end (for a2 there), and to its own host's (for a3 here), forged from netA members.
      packets(b1.path, kind.craft(b1.ip, ends[1]!, a1.ip, a2.ip, 7002, `${label}-peer`)),
      packets(b1.path, kind.craft(b1.ip, ends[0]!, a2.ip, a3.ip, 7002, `${label}-own`)),
      // From the fabric, an address that is no Node's.
      packets(world.fabric.fabric.path, kind.craft('10.99.0.1', ends[1]!, a1.ip, a2.ip, 7002, `${label}-outsider`)),
      // The real thing, through the tunnel.
      packets(a1.path, ['udp', a1.ip, a2.ip, 7002, `${label}-real`, 5]),
    ]));
    t.deepEqual([...new Set(await attack('default'))], ['default-real'], 'only the real traffic arrives');

    // Workloads may send the encapsulation once FelixConfiguration says so (here, to a task that listens for it)...
    const between = (label: string) => heardBy([b2], encapsulation.name === 'vxlan' ? 4789 : 7003, () => packets(b1.path, encapsulation.name === 'vxlan' ? ['udp', b1.ip, b2.ip, 4789, label, 5] : kind.craft(b1.ip, { address: b2.ip }, b1.ip, b2.ip, 7003, label)));
    t.deepEqual(await between('before'), [], `dropped at the workload's interface while ${encapsulation.allowFromWorkloads} is off`);
    await setFelix(ds, { defaultEndpointToHostAction: 'Accept', [encapsulation.allowFromWorkloads]: true });
    await waitFor('workloads to be let send it', async () => (await between('allowed')).length > 0, 15_000);
    // ...and still never into a host's tunnel: a task's address is no Node's.
    t.deepEqual([...new Set(await attack('allowed'))], ['allowed-real'], 'hosts still take tunnel packets only from Nodes');

    for (const task of [a1, a2, a3, b1, b2]) for (const run of await task.agent.destroy(task.id)) t.is(run.code, 0, run.stdout);
  });
}
