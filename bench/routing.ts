/**
 * Routing across hosts, on ten simulated agents on one link, each with its node daemon:
 * - bgp_converge_ms_p50 (`--backend bird`, full mesh) and vxlan_converge_ms_p50 (`--backend vxlan`,
 *   pool `vxlanMode: Always`): from asking IPAM for an address that claims a new block on one host
 *   (the pool's blocks are /32s, so every allocation claims one) to a route to that block on every
 *   other host, over 20 rounds (hosts in turn) after 3 rounds of warm-up;
 * - vxlan_throughput_ratio: TCP throughput (iperf3, 3 s) between tasks on two hosts through VXLAN
 *   over the same without encapsulation (the pool switched between Always and Never), alternating,
 *   3 rounds each; the tasks' veths keep the VXLAN MTU in both, so only the encapsulation differs.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { NodeDaemon } from '../sim/daemon';
import type { MesosAgent } from '../sim/mesos-agent';
import { waitFor } from '../sim/wait';
import { CniWorld } from '../sim/world';
import type { Datastore } from '../shared/datastore';
import type { Ipam } from '../shared/ipam/ipam';
import type { EncapsulationMode } from '../shared/ipam/pool';
import { workloadMtu } from '../shared/routing/workload-mtu';
import { formatAddress } from '../shared/net';
import { median, nowMs, round } from './stats';

const HOSTS = 10;
const ROUNDS = 20;
const WARM_UP = 3;
const THROUGHPUT_ROUNDS = 3;

interface Cluster {
  readonly ds: Datastore;
  readonly ipam: Ipam;
  readonly prefix: string;
  readonly daemons: NodeDaemon[];
  readonly node: (i: number) => string;
}

async function cluster(world: CniWorld, agents: readonly MesosAgent[], label: string, backend: string, vxlanMode: EncapsulationMode): Promise<Cluster> {
  const prefix = `/bench-${label}-${randomUUID().slice(0, 8)}`;
  const { ds, ipam } = await world.datastore(prefix);
  await ipam.createPool('bench', { cidr: '10.180.0.0/16', blockSize: 32, vxlanMode });
  const daemons = await Promise.all(agents.map((agent, i) => NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.etcd.hostEndpoint, '--etcd-prefix', prefix, '--nodename', `${label}-${i}`, '--backend', backend, '--no-policy', '--gc-interval', '0', '--block-release-delay', '0', '--metrics-address', ''])));
  return { ds, ipam, prefix, daemons, node: (i) => `${label}-${i}` };
}

/** Rounds of: a new block on host r mod 10, then the time until every other host has a route to it. */
async function converge(agents: readonly MesosAgent[], { ipam, node }: Cluster): Promise<number[]> {
  const samples: number[] = [];
  for (let r = 0; r < ROUNDS + WARM_UP; r++) {
    const owner = r % agents.length;
    const started = nowMs();
    const { ipv4 } = await ipam.autoAssign({ handle: `bench-${r}`, node: node(owner), num4: 1, num6: 0, pools4: ['bench'] });
    const address = formatAddress(ipv4[0]!);
    const others = agents.filter((_, i) => i !== owner);
    // Warm-up rounds also wait for the sessions and tunnels to come up.
    const arrived = await Promise.all(others.map(async (agent) => {
      await waitFor(`a route to ${address}`, async () => (await agent.host.json<unknown[]>('route', 'show', 'to', 'exact', `${address}/32`)).length > 0, r < WARM_UP ? 60_000 : 10_000, 5);
      return nowMs();
    }));
    if (r >= WARM_UP) samples.push(Math.max(...arrived) - started);
  }
  return samples;
}

async function iperf(client: MesosAgent, clientId: string, serverIp: string): Promise<number> {
  const { stdout } = await client.container(clientId).exec('iperf3', ['-c', serverIp, '-t', '3', '-J'], { timeout: 20_000 });
  return (JSON.parse(stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
}

async function throughput(world: CniWorld, agents: readonly MesosAgent[], c: Cluster): Promise<{ vxlan: number; direct: number }> {
  const [one, two] = agents as [MesosAgent, MesosAgent];
  const launch = async (agent: MesosAgent, i: number) => {
    const id = randomUUID();
    const launched = await agent.launch(id, [{ network: world.network('net', c.prefix, c.node(i), { daemon_socket: c.daemons[i]!.cniSocket, mtu_file: c.daemons[i]!.mtuFile, log_file_path: '' }) }]);
    if (launched.runs[0]!.code !== 0) throw new Error(`launch failed: ${launched.runs[0]!.stdout}`);
    return { id, ip: launched.ips[0]!.ip4!.split('/')[0]! };
  };
  await waitFor('the daemons to record the VXLAN MTU', async () => c.daemons.slice(0, 2).every((d) => workloadMtu(d.mtuFile) === 1450), 20_000);
  const server = await launch(two, 1);
  const client = await launch(one, 0);
  const iperfServer = spawn('nsenter', [`--net=${two.container(server.id).path}`, 'iperf3', '-s'], { stdio: 'ignore' });
  const setMode = async (vxlanMode: EncapsulationMode) => {
    const pool = (await c.ds.resources.get('IPPool', 'bench'))!;
    await c.ds.resources.update({ ...pool, spec: { ...pool.spec, vxlanMode } });
    const device = vxlanMode === 'Always' ? 'vxlan.calico' : 'eth0';
    await waitFor(`the route through ${device}`, async () => (await one.host.ip('route', 'show', 'to', 'exact', `${server.ip}/32`)).includes(`dev ${device}`) || (await one.host.ip('route', 'show', 'proto', '80')).includes(`dev ${device}`), 20_000);
    await waitFor('the path to work', async () => one.container(client.id).ping(server.ip), 20_000);
  };
  const vxlan: number[] = [];
  const direct: number[] = [];
  try {
    await sleep(300);
    for (let r = 0; r < THROUGHPUT_ROUNDS; r++) {
      await setMode('Always');
      vxlan.push(await iperf(one, client.id, server.ip));
      await setMode('Never');
      direct.push(await iperf(one, client.id, server.ip));
    }
  } finally {
    iperfServer.kill('SIGKILL');
    await one.destroy(client.id);
    await two.destroy(server.id);
  }
  return { vxlan: median(vxlan), direct: median(direct) };
}

export async function benchRouting(): Promise<Record<string, number>> {
  const world = await CniWorld.create();
  try {
    const agents: MesosAgent[] = [];
    for (let i = 0; i < HOSTS; i++) agents.push(await world.addAgent());
    const figures: Record<string, number> = {};
    for (const [label, backend, mode] of [['bgp', 'bird', 'Never'], ['vxlan', 'vxlan', 'Always']] as const) {
      const c = await cluster(world, agents, label, backend, mode);
      try {
        const samples = await converge(agents, c);
        console.log(`${label}: new block routed on all ${HOSTS - 1} other hosts in ${round(median(samples))} ms (median of ${ROUNDS})`);
        figures[`${label}_converge_ms_p50`] = round(median(samples), 1);
        figures[`${label}_converge_ms_max`] = round(Math.max(...samples), 1);
        if (label === 'vxlan') {
          const { vxlan, direct } = await throughput(world, agents, c);
          figures.vxlan_throughput_gbps = round(vxlan / 1e9, 2);
          figures.direct_throughput_gbps = round(direct / 1e9, 2);
          figures.vxlan_throughput_ratio = round(vxlan / direct, 3);
        }
      } finally {
        for (const daemon of c.daemons) await daemon.destroy();
      }
    }
    return figures;
  } finally {
    await world.destroy();
  }
}
