/**
 * Isolation as a hostile task tries to get around it, on two agents with their daemons: netA and
 * netB are isolated from each other by their profiles; tasks are dual-stack.
 */
import test, { type ExecutionContext } from 'ava';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import type { Datastore } from '../../shared/datastore';
import { NFT } from '../../shared/dataplane/nftables';
import { NodeDaemon } from '../../sim/daemon';
import type { MesosAgent, NetworkConfig } from '../../sim/mesos-agent';
import { waitFor } from '../../sim/wait';
import { CniWorld } from '../../sim/world';
import { listener, packets, type Heard } from '../helpers/packets';

interface Task {
  readonly id: string;
  readonly agent: MesosAgent;
  readonly ip4: string;
  readonly ip6: string;
  readonly path: string;
}

/** The daemons' metrics, on every address of their hosts: a service workloads may not reach either. */
const METRICS_PORT = 9464;
const state = {} as { world: CniWorld; agents: MesosAgent[]; prefix: string; ds: Datastore; daemons: NodeDaemon[] };

async function startDaemon(i: number): Promise<NodeDaemon> {
  return NodeDaemon.start(state.agents[i]!.host, ['--etcd-endpoints', state.world.fabric.hostEndpoints, '--etcd-prefix', state.prefix, '--nodename', `sec-${i}`, '--gc-interval', '0', '--metrics-address', `0.0.0.0:${METRICS_PORT}`]);
}

test.before(async () => {
  state.world = await CniWorld.create();
  state.agents = [await state.world.addAgent(), await state.world.addAgent()];
  // Dual-stack hosts, so that IPv6 is routed between them too.
  for (const [i, agent] of state.agents.entries()) await agent.host.ip('addr', 'add', `fd00:99::${11 + i}/64`, 'dev', 'eth0', 'nodad');
  const { prefix, ds } = await state.world.scenario('sec');
  Object.assign(state, { prefix, ds });
  state.daemons = [await startDaemon(0), await startDaemon(1)];
});

test.after.always(async () => {
  for (const daemon of state.daemons ?? []) await daemon.destroy();
  await state.world?.destroy();
});

function network(name: string, i: number, extra: Record<string, unknown> = {}): NetworkConfig {
  return state.world.network(name, state.prefix, `sec-${i}`, { daemon_socket: state.daemons[i]!.cniSocket, ipam: { type: 'calico-ipam', assign_ipv6: 'true' }, ...extra });
}

async function launch(name: string, i: number, extra: Record<string, unknown> = {}): Promise<Task> {
  const id = randomUUID();
  const agent = state.agents[i]!;
  const launched = await agent.launch(id, [{ network: network(name, i, extra) }]);
  if (launched.runs[0]!.code !== 0) throw new Error(launched.runs[0]!.stdout);
  const ips = launched.ips[0]!;
  return { id, agent, ip4: ips.ip4!.split('/')[0]!, ip6: ips.ip6!.split('/')[0]!, path: agent.container(id).path };
}

async function destroy(t: ExecutionContext, ...tasks: Task[]): Promise<void> {
  for (const task of tasks) for (const r of await task.agent.destroy(task.id)) t.is(r.code, 0, r.stdout);
}

/** Whether `from` gets an answer from `to` within a bounded time, once policy has settled. */
async function settles(from: Task, to: string, expected: boolean): Promise<boolean> {
  try {
    await waitFor(`${from.ip4} ${expected ? 'reaching' : 'not reaching'} ${to}`, async () => (await from.agent.container(from.id).ping(to)) === expected, 10_000);
    return true;
  } catch {
    return false;
  }
}

const payloads = (heard: readonly Heard[]) => heard.map((h) => `${h.source} ${h.payload}`);

test.serial('security - a task sending from another workload\'s address (UDP, ICMP, a raw socket; IPv4 and IPv6; same host and across hosts) is dropped at its interface; the owner\'s own traffic flows; a forged foreign source never leaves the host', async (t) => {
  const a1 = await launch('netA', 0);
  const a2 = await launch('netA', 0);
  const a3 = await launch('netA', 1);
  const b1 = await launch('netB', 0);
  t.true(await settles(a1, a3.ip4, true), 'netA reaches netA across hosts');
  // The attacker takes a1's addresses as its own.
  await b1.agent.container(b1.id).ip('addr', 'add', `${a1.ip4}/32`, 'dev', 'eth0');
  await b1.agent.container(b1.id).ip('-6', 'addr', 'add', `${a1.ip6}/128`, 'dev', 'eth0', 'nodad');

  const seconds = 6;
  const [udp2, udp3, icmp2, icmp3, wire] = await Promise.all([
    listener(a2.path, ['listen', 7000], seconds),
    listener(a3.path, ['listen', 7000], seconds),
    listener(a2.path, ['listen-icmp'], seconds),
    listener(a3.path, ['listen-icmp'], seconds),
    listener(state.agents[1]!.host.path, ['sniff', 'eth0', 'foreign'], seconds),
  ]);
  const send = (task: Task, args: (string | number)[]) => packets(task.path, args);
  await Promise.all([
    // Forged: from a1's addresses, by b1.
    ...[a2, a3].flatMap((to) => [
      send(b1, ['udp', a1.ip4, to.ip4, 7000, 'spoof-udp4', 3]),
      send(b1, ['udp', a1.ip6, to.ip6, 7000, 'spoof-udp6', 3]),
      send(b1, ['raw', a1.ip4, to.ip4, 7000, 'spoof-raw4', 3]),
      send(b1, ['icmp', a1.ip4, to.ip4, 'spoof-icmp4', 3]),
      send(b1, ['icmp', a1.ip6, to.ip6, 'spoof-icmp6', 3]),
    ]),
    send(b1, ['raw', '192.0.2.7', a3.ip4, 7000, 'foreign', 3]),
    // The same from the owner itself: heard, so that "nothing heard" means dropped.
    ...[a2, a3].flatMap((to) => [
      send(a1, ['udp', a1.ip4, to.ip4, 7000, 'legit-udp4', 3]),
      send(a1, ['udp', a1.ip6, to.ip6, 7000, 'legit-udp6', 3]),
      send(a1, ['icmp', a1.ip4, to.ip4, 'legit-icmp4', 3]),
      send(a1, ['icmp', a1.ip6, to.ip6, 'legit-icmp6', 3]),
    ]),
  ]);
  const heard = [...(await udp2.heard), ...(await udp3.heard), ...(await icmp2.heard), ...(await icmp3.heard)];
  t.deepEqual(payloads(heard).filter((p) => p.includes('spoof')), [], 'no forged packet arrives');
  for (const kind of ['udp4', 'udp6', 'icmp4', 'icmp6']) {
    t.is(heard.filter((h) => h.payload === `legit-${kind}`).length, 6, `the owner's own ${kind} arrives on both hosts`);
  }
  t.deepEqual(payloads(await wire.heard), [], 'a foreign source never leaves the host');
  const rpFilter = await b1.agent.host.exec('sh', ['-c', 'cat /proc/sys/net/ipv4/conf/cali*/rp_filter | sort -u']);
  t.is(rpFilter.stdout.trim(), '1', 'the kernel\'s reverse-path check is strict on workload interfaces');
  await destroy(t, a1, a2, a3, b1);
});

test.serial('security - an endpoint given allowSpoofedSourcePrefixes (with workloadSourceSpoofing: Any, by an operator) may send from them, and only from them', async (t) => {
  const b1 = await launch('netB', 0);
  const b2 = await launch('netB', 0);
  // A policy that lets 192.0.2.0/24 into netB, so that only the source check decides.
  await state.ds.resources.create({ kind: 'GlobalNetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name: 'test-net-in' }, spec: { order: 1, selector: 'has(pcn.netB)', ingress: [{ action: 'Allow', source: { nets: ['192.0.2.0/24'] } }, { action: 'Pass' }] } });
  t.teardown(() => state.ds.resources.delete('GlobalNetworkPolicy', 'test-net-in').catch(() => undefined));
  const attempt = async (label: string) => {
    const heard = await listener(b2.path, ['listen', 7001], 3);
    await Promise.all([packets(b1.path, ['raw', '192.0.2.7', b2.ip4, 7001, `${label}-in`, 3]), packets(b1.path, ['raw', '198.51.100.7', b2.ip4, 7001, `${label}-out`, 3]), packets(b1.path, ['raw', b1.ip4, b2.ip4, 7001, `${label}-own`, 3])]);
    return (await heard.heard).map((h) => h.payload);
  };
  t.true(await settles(b1, b2.ip4, true));
  t.deepEqual([...new Set(await attempt('before'))], ['before-own'], 'not allowed yet');

  const [endpoint] = (await state.ds.resources.list('WorkloadEndpoint')).filter((e) => e.spec.containerID === b1.id);
  await state.ds.resources.update({ ...endpoint!, spec: { ...endpoint!.spec, allowSpoofedSourcePrefixes: ['192.0.2.0/24'] } } as never);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  t.deepEqual([...new Set(await attempt('disabled'))], ['disabled-own'], 'ignored while FelixConfiguration says workloadSourceSpoofing Disabled');
  await state.ds.resources.create({ kind: 'FelixConfiguration', apiVersion: 'projectcalico.org/v3', metadata: { name: 'default' }, spec: { workloadSourceSpoofing: 'Any' } });
  t.teardown(() => state.ds.resources.delete('FelixConfiguration', 'default').catch(() => undefined));
  await waitFor('the prefix to be allowed', async () => (await attempt('any')).includes('any-in'), 10_000);
  t.deepEqual([...new Set(await attempt('allowed'))].sort(), ['allowed-in', 'allowed-own'], 'from the prefix, and its own address; nothing else');
  await destroy(t, b1, b2);
});

test.serial('security - a task cannot reach etcd, even on a routed fabric, nor its host daemon\'s metrics; FelixConfiguration allowDatastoreAccessFromWorkloads lets it', async (t) => {
  const a1 = await launch('netA', 0);
  const fabric = state.world.fabric.fabric;
  // The fabric routes back to the task: only our rule stands between it and etcd.
  await fabric.ip('route', 'add', `${a1.ip4}/32`, 'via', '10.99.0.11');
  t.teardown(() => fabric.ip('route', 'del', `${a1.ip4}/32`).catch(() => undefined));
  const put = async (value: string) => {
    try {
      await a1.agent.container(a1.id).exec('etcdctl', ['--endpoints', state.world.fabric.hostEndpoints, '--dial-timeout', '2s', '--command-timeout', '3s', 'put', `${state.prefix}/resources/v3/projectcalico.org/profiles/netA`, value], { timeout: 10_000 });
      return true;
    } catch {
      return false;
    }
  };
  // Its own host's metrics, on the host's address (the fabric's side): the daemon listens on every
  // address. Workloads may reach their host here (defaultEndpointToHostAction: Accept), but not that.
  const metrics = () => a1.agent.container(a1.id).exec('bash', ['-c', `exec 3<>/dev/tcp/10.99.0.11/${METRICS_PORT}`], { timeout: 5000 }).then(() => true, () => false);
  const reaches = () => a1.agent.container(a1.id).exec('etcdctl', ['--endpoints', state.world.fabric.hostEndpoints, '--dial-timeout', '1s', '--command-timeout', '1s', 'get', 'x'], { timeout: 5000 }).then(() => true, () => false);
  const felix = async (spec: Record<string, string | boolean>) => {
    await state.ds.resources.delete('FelixConfiguration', 'default');
    await state.ds.resources.create({ kind: 'FelixConfiguration', apiVersion: 'projectcalico.org/v3', metadata: { name: 'default' }, spec });
  };
  t.teardown(() => state.ds.resources.delete('FelixConfiguration', 'default').catch(() => undefined));
  await felix({ defaultEndpointToHostAction: 'Accept' });
  await waitFor('the host to take its workloads\' packets', () => a1.agent.container(a1.id).ping('10.99.0.11'), 10_000);
  t.true(await state.agents[0]!.host.exec('bash', ['-c', `exec 3<>/dev/tcp/10.99.0.11/${METRICS_PORT}`]).then(() => true, () => false), 'the host reaches its daemon\'s metrics');
  t.false(await put('{}'), 'the task cannot write the datastore');
  t.truthy(await state.ds.resources.get('Profile', 'netA'), 'netA\'s profile is untouched');
  t.false(await metrics(), 'nor reach its host daemon\'s metrics');
  // The same paths, once allowed, work: it was our rules that stopped them.
  await felix({ defaultEndpointToHostAction: 'Accept', allowDatastoreAccessFromWorkloads: true });
  await waitFor('etcd to be reachable from the task', reaches, 10_000);
  t.true(await metrics(), 'and the daemon\'s metrics');
  await felix({ defaultEndpointToHostAction: 'Accept' });
  await waitFor('etcd to be out of reach again', async () => !(await reaches()), 10_000);
  t.false(await metrics(), 'the metrics out of reach again');
  await state.ds.resources.delete('FelixConfiguration', 'default');
  await destroy(t, a1);
});

test.serial('security - a deny-all policy corrupted in etcd stays closed: its last good version, and after a restart, a quarantine', async (t) => {
  const a1 = await launch('netA', 0);
  const a2 = await launch('netA', 0);
  t.true(await settles(a2, a1.ip4, true));
  const key = state.ds.keys.resource('GlobalNetworkPolicy', 'deny-neta');
  await state.ds.resources.create({ kind: 'GlobalNetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name: 'deny-neta' }, spec: { selector: 'has(pcn.netA)', types: ['Ingress'] } });
  t.true(await settles(a2, a1.ip4, false), 'the deny-all policy closes netA');
  await state.ds.kv.txn([{ key, put: '{"kind":"GlobalNetworkPolicy","spec":{"selector":' }]);
  await waitFor('the daemon to log the corrupted policy', () => state.daemons[0]!.stderr.includes(`key=${key} `), 5000);
  t.false(await a2.agent.container(a2.id).ping(a1.ip4), 'its last good version stays in force');
  await state.daemons[0]!.stop('SIGKILL');
  state.daemons[0] = await startDaemon(0);
  await waitFor('the restarted daemon to program', () => state.daemons[0]!.stderr.includes('policy programmed'), 10_000);
  t.false(await a2.agent.container(a2.id).ping(a1.ip4), 'never read good by the new daemon: quarantined, still closed');
  t.false(await a1.agent.container(a1.id).ping(a2.ip4), 'the quarantine denies both ways');
  await state.ds.kv.txn([{ key, delete: true }]);
  t.true(await settles(a2, a1.ip4, true), 'gone, it closes nothing');
  await destroy(t, a1, a2);
});

test.serial('security - closed from the first instant: after a reboot with etcd away, and on a host whose plugins run without a daemon', async (t) => {
  const a1 = await launch('netA', 0);
  const a2 = await launch('netA', 0);
  t.true(await settles(a2, a1.ip4, true));
  const host = state.agents[0]!.host;
  // A reboot: the daemon gone, the table with it, etcd not answering; the daemon starts again.
  await state.daemons[0]!.stop('SIGKILL');
  await host.exec(NFT, ['delete', 'table', 'inet', 'calico']);
  t.true(await a2.agent.container(a2.id).ping(a1.ip4), 'with no table at all, everything is open (what we close)');
  state.world.fabric.etcd.freeze();
  try {
    state.daemons[0] = await startDaemon(0);
    t.false(await a2.agent.container(a2.id).ping(a1.ip4), 'the new daemon closed every workload before reading etcd');
    t.regex((await host.exec(NFT, ['list', 'chain', 'inet', 'calico', 'wl-guard'])).stdout, /iifname \. ip saddr != @wl_src4 iifname \. ip saddr != @wl_pfx4 drop/);
  } finally {
    state.world.fabric.etcd.thaw();
  }
  t.true(await settles(a2, a1.ip4, true), 'once etcd answers, the workloads are programmed');
  await destroy(t, a1, a2);

  // A plugin with no daemon at all (and nothing saying the host enforces no policy).
  const daemon = state.daemons[1]!;
  await daemon.stop('SIGKILL');
  await state.agents[1]!.host.exec(NFT, ['delete', 'table', 'inet', 'calico']);
  const standalone = { daemon_socket: '', no_policy: false };
  const s1 = await launch('netA', 1, standalone);
  const s2 = await launch('netA', 1, standalone);
  t.false(await s1.agent.container(s1.id).ping(s2.ip4), 'the plugin closed the workloads before wiring them');
  t.regex((await state.agents[1]!.host.exec(NFT, ['list', 'table', 'inet', 'calico'])).stdout, /chain wl-guard/);
  state.daemons[1] = await startDaemon(1);
  t.true(await settles(s1, s2.ip4, true), 'a daemon programs them');
  await destroy(t, s1, s2);
});

test.serial('security - calicoctl datastore init warns when etcd answers with neither a client certificate nor a user', async (t) => {
  const { stdout } = await state.agents[0]!.host.exec(resolve('dist/bin/calicoctl'), ['--etcd-endpoints', state.world.fabric.hostEndpoints, '--etcd-prefix', state.prefix, 'datastore', 'init']);
  t.regex(stdout, /WARNING: etcd answered with neither a client certificate nor a user/);
});
