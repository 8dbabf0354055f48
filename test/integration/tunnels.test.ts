import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { CniWorld } from '../helpers/cni-world';
import { readIpamState } from '../helpers/ipam-state';
import { NodeDaemon } from '../../sim/daemon';
import type { Rack } from '../../sim/fabric';
import type { MesosAgent } from '../../sim/mesos-agent';
import { waitFor } from '../../sim/wait';
import { runCalicoctl } from '../../sim/calicoctl';
import type { Datastore } from '../../shared/datastore';
import type { EncapsulationMode } from '../../shared/ipam/pool';

// Two racks: agents 0 and 1 on the fabric's link (10.99.0.0/24), agent 2 behind a router
// (10.98.0.0/24) that knows nothing of workload addresses, so only encapsulated traffic crosses it.
let world: CniWorld;
let rack: Rack;
let agents: MesosAgent[];

/** Whether this kernel makes IPIP devices (tried in a namespace of its own, gone at once). */
const kernelHasIpip = (() => {
  try {
    execFileSync('unshare', ['-n', 'ip', 'link', 'add', 'probe', 'type', 'ipip'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

test.before(async () => {
  world = await CniWorld.create();
  rack = await world.fabric.addRack();
  agents = [await world.addAgent(), await world.addAgent(), await world.addAgent(rack)];
});
test.after.always(async () => {
  await world?.destroy();
});

interface Setup {
  readonly ds: Datastore;
  readonly prefix: string;
  readonly tasks: { readonly agent: MesosAgent; readonly id: string; readonly ip: string }[];
}

/** A pool of the given modes, a daemon per agent with `backend`, and a task on each agent. */
async function cluster(t: ExecutionContext, label: string, backend: string, modes: { ipipMode?: EncapsulationMode; vxlanMode?: EncapsulationMode }): Promise<Setup> {
  const prefix = `/${label}-${randomUUID().slice(0, 8)}`;
  const { ds, ipam } = await world.datastore(prefix);
  await ipam.createPool('pool4', { cidr: '10.160.0.0/16', ...modes });
  const daemons: NodeDaemon[] = [];
  t.teardown(async () => {
    // What the daemons said, when the test failed.
    if (!t.passed) for (const daemon of daemons) t.log(daemon.stderr.split('\n').filter((l) => !l.includes('[DEBUG]')).slice(-15).join('\n'));
    for (const daemon of daemons) await daemon.destroy();
  });
  for (const [i, agent] of agents.entries()) {
    daemons.push(await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.etcd.hostEndpoint, '--etcd-prefix', prefix, '--nodename', `${label}-${i}`, '--backend', backend, '--gc-interval', '0', '--metrics-address', '']));
  }
  // The daemons work out the veths' MTU for their tunnels; a task's network config names none.
  await waitFor('each daemon to record the workloads\' MTU', async () => daemons.every((d) => existsSync(d.mtuFile)), 10_000);
  const tasks: Setup['tasks'][number][] = [];
  for (const [i, agent] of agents.entries()) {
    const id = randomUUID();
    const launched = await agent.launch(id, [{ network: world.network('net', prefix, `${label}-${i}`, { daemon_socket: daemons[i]!.cniSocket, mtu_file: daemons[i]!.mtuFile }) }]);
    t.is(launched.runs[0]!.code, 0, launched.runs[0]!.stdout);
    tasks.push({ agent, id, ip: launched.ips[0]!.ip4!.split('/')[0]! });
  }
  return { ds, prefix, tasks };
}

/** The tasks removed: no address (tunnel ends included, once no pool needs them), record or veth left. */
async function finish(t: ExecutionContext, ds: Datastore, tasks: Setup['tasks']): Promise<void> {
  for (const task of tasks) for (const run of await task.agent.destroy(task.id)) t.is(run.code, 0, run.stdout);
  const state = await readIpamState(ds);
  t.deepEqual([...state.allocated.keys()], [], 'no allocation left');
  t.deepEqual((await ds.resources.list('WorkloadEndpoint')).map((w) => w.metadata.name), [], 'no endpoint record left');
  for (const agent of agents) {
    const caliLinks = async () => (await agent.host.json<{ ifname: string }[]>('link', 'show')).map((l) => l.ifname).filter((n) => n.startsWith('cali'));
    await waitFor('veths gone', async () => (await caliLinks()).length === 0, 5000);
  }
}

const txPackets = async (agent: MesosAgent, device: string) => {
  const [link] = await agent.host.json<{ stats64?: { tx: { packets: number } } }[]>('-s', 'link', 'show', 'dev', device);
  return link?.stats64?.tx.packets ?? 0;
};

/** A TCP connection from one task to another carries a line. */
async function tcpWorks(from: Setup['tasks'][number], to: Setup['tasks'][number]): Promise<boolean> {
  const port = String(20000 + Math.floor(Math.random() * 10000));
  const listener = spawn('nsenter', [`--net=${to.agent.container(to.id).path}`, 'busybox', 'nc', '-l', '-p', port], { stdio: ['pipe', 'pipe', 'ignore'] });
  try {
    let received = '';
    listener.stdout!.on('data', (d: Buffer) => (received += d.toString()));
    for (let i = 0; i < 25 && !received.includes('hi'); i++) {
      await from.agent.container(from.id).exec('busybox', ['nc', '-w', '2', to.ip, port], { input: 'hi\n', timeout: 5000 }).catch(() => undefined);
      for (let j = 0; j < 10 && !received.includes('hi'); j++) await new Promise((r) => setTimeout(r, 50));
    }
    return received.includes('hi');
  } finally {
    listener.kill('SIGKILL');
  }
}

test.serial('tunnels - VXLAN Always: every task reaches every other across the router (ping and TCP), through vxlan.calico; tunnel ends recorded on the Nodes; CrossSubnet then keeps the same rack unencapsulated', async (t) => {
  const { ds, tasks, prefix } = await cluster(t, 'vx', 'vxlan', { vxlanMode: 'Always' });
  const [a, b, c] = tasks as [Setup['tasks'][number], Setup['tasks'][number], Setup['tasks'][number]];
  await waitFor('cross-rack routes through the tunnel', async () => a.agent.container(a.id).ping(c.ip), 15_000);
  for (const [from, to] of [[a, c], [c, a], [b, c], [a, b]] as const) t.true(await from.agent.container(from.id).ping(to.ip), `${from.ip} reaches ${to.ip}`);
  t.true(await tcpWorks(a, c), 'TCP across the router');
  const nodes = await ds.resources.list('Node');
  for (const node of nodes) {
    t.regex(node.spec.ipv4VXLANTunnelAddr ?? '', /^10\.160\./, `${node.metadata.name} has a tunnel address from the pool`);
    t.regex(node.spec.vxlanTunnelMACAddr ?? '', /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
  }
  const check = await runCalicoctl(['ipam', 'check', '--grace-period', '0'], { ETCD_ENDPOINTS: world.fabric.etcd.endpoint, ETCD_PREFIX: prefix });
  t.is(check.code, 0, check.stdout);
  t.regex(check.stdout, /No problems found/, 'tunnel addresses are held by their Nodes, not leaked');
  const [device] = await a.agent.host.json<{ mtu: number; linkinfo: { info_data: { id: number; port: number } } }[]>('-d', 'link', 'show', 'dev', 'vxlan.calico');
  t.like(device, { mtu: 1450, linkinfo: { info_data: { id: 4096, port: 4789 } } });
  const [eth0] = await a.agent.container(a.id).json<{ mtu: number }[]>('link', 'show', 'dev', 'eth0');
  t.is(eth0?.mtu, 1450, 'the task\'s veth leaves room for the VXLAN header');

  const sameRackBefore = await txPackets(a.agent, 'vxlan.calico');
  t.true(await a.agent.container(a.id).ping(b.ip));
  t.true((await txPackets(a.agent, 'vxlan.calico')) > sameRackBefore, 'Always: the same rack is encapsulated too');

  const pool = (await ds.resources.get('IPPool', 'pool4'))!;
  await ds.resources.update({ ...pool, spec: { ...pool.spec, vxlanMode: 'CrossSubnet' } });
  await waitFor('the same rack routed directly', async () => (await a.agent.host.ip('route', 'show', 'proto', '80')).includes('via 10.99.0.12 dev eth0'), 10_000);
  const before = await txPackets(a.agent, 'vxlan.calico');
  t.true(await a.agent.container(a.id).ping(b.ip), 'the same rack, directly');
  t.is(await txPackets(a.agent, 'vxlan.calico'), before, 'CrossSubnet: nothing encapsulated within the rack');
  t.true(await a.agent.container(a.id).ping(c.ip), 'the other rack, still');
  t.true((await txPackets(a.agent, 'vxlan.calico')) > before, 'CrossSubnet: the other rack encapsulated');
  t.true(await tcpWorks(c, a), 'TCP back across the router');

  // No pool encapsulating: the device goes, and the tunnel addresses are given back.
  await ds.resources.update({ ...(await ds.resources.get('IPPool', 'pool4'))!, spec: { ...pool.spec, vxlanMode: 'Never' } });
  await waitFor('vxlan.calico removed', async () => !(await a.agent.host.ip('link', 'show')).includes('vxlan.calico'), 10_000);
  await waitFor('tunnel addresses cleared', async () => (await ds.resources.list('Node')).every((n) => n.spec.ipv4VXLANTunnelAddr === undefined), 10_000);
  t.false(await a.agent.container(a.id).ping(c.ip), 'unencapsulated, the router drops it');
  await finish(t, ds, tasks);
});

(kernelHasIpip ? test.serial : test.skip)('tunnels - IPIP Always and CrossSubnet: cross-rack ping and TCP through tunl0 (needs a kernel with ipip)', async (t) => {
  const { ds, tasks } = await cluster(t, 'ip', 'static', { ipipMode: 'Always' });
  const [a, b, c] = tasks as [Setup['tasks'][number], Setup['tasks'][number], Setup['tasks'][number]];
  await waitFor('cross-rack routes through tunl0', async () => a.agent.container(a.id).ping(c.ip), 15_000);
  t.true(await c.agent.container(c.id).ping(a.ip));
  t.true(await tcpWorks(a, c));
  t.true((await txPackets(a.agent, 'tunl0')) > 0);
  const pool = (await ds.resources.get('IPPool', 'pool4'))!;
  await ds.resources.update({ ...pool, spec: { ...pool.spec, ipipMode: 'CrossSubnet' } });
  await waitFor('the same rack routed directly', async () => (await a.agent.host.ip('route', 'show', 'proto', '80')).includes('via 10.99.0.12 dev eth0'), 10_000);
  const before = await txPackets(a.agent, 'tunl0');
  t.true(await a.agent.container(a.id).ping(b.ip));
  t.is(await txPackets(a.agent, 'tunl0'), before);
  t.true(await a.agent.container(a.id).ping(c.ip));
  await ds.resources.update({ ...(await ds.resources.get('IPPool', 'pool4'))!, spec: { ...pool.spec, ipipMode: 'Never' } });
  await waitFor('tunnel addresses cleared', async () => (await ds.resources.list('Node')).every((n) => n.spec.bgp?.ipv4IPIPTunnelAddr === undefined), 10_000);
  await finish(t, ds, tasks);
});

