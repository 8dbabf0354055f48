import test from 'ava';
import { randomUUID } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { BlockReclaimer } from '../../daemon/block-reclaimer';
import { GarbageCollector } from '../../daemon/garbage-collector';
import type { Datastore } from '../../shared/datastore';
import { Ipam } from '../../shared/ipam/ipam';
import { silentLogger } from '../../shared/log';
import { parseAddress } from '../../shared/net/address';
import { runCalicoctl } from '../../sim/calicoctl';
import { runPlugin, type PluginRun } from '../../sim/cni-exec';
import { NodeDaemon } from '../../sim/daemon';
import { callDriver } from '../../sim/driver-client';
import type { MesosAgent } from '../../sim/mesos-agent';
import { CniWorld, assertNothingLeft } from '../helpers/cni-world';
import { readIpamState } from '../helpers/ipam-state';

let world: CniWorld;
const daemons: NodeDaemon[] = [];
test.before(async () => {
  world = await CniWorld.create();
  for (let i = 0; i < 4; i++) await world.addAgent();
});
test.after.always(async () => {
  for (const daemon of daemons) await daemon.destroy();
  await world?.destroy();
});

/** A node daemon on an agent, for its own node name under the scenario's prefix. */
async function daemonFor(agent: MesosAgent, prefix: string, node: string): Promise<NodeDaemon> {
  const daemon = await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', node, '--no-routes', '--gc-interval', '0', '--metrics-address', '']);
  daemons.push(daemon);
  return daemon;
}

/** Blocks a host holds: affinities of its own. */
async function blocksOf(ds: Datastore, node: string): Promise<number> {
  return (await ds.kv.list(ds.keys.hostAffinityPrefix(node, 4), { keysOnly: true })).length;
}

/** `count` concurrent CNI ADDs on an agent, each in a container of its own. */
async function burst(agent: MesosAgent, conf: object, count: number): Promise<{ id: string; run: PluginRun }[]> {
  const ids = Array.from({ length: count }, () => randomUUID());
  for (const id of ids) await agent.createContainer(id);
  const stdin = JSON.stringify(conf);
  return Promise.all(ids.map(async (id) => ({ id, run: await runPlugin(agent.host, join(world.pluginsDir, 'calico'), agent.env('ADD', id, 'eth0'), stdin, 120_000) })));
}

test.serial('burst - 200 parallel Docker RequestAddress on one host, a daemon restart, 200 more: all served, unique, at most one spare block', async (t) => {
  const { prefix, ds } = await world.scenario('docker-burst');
  const agent = world.agents[0]!;
  let daemon = await daemonFor(agent, prefix, 'burst-docker');
  const request = () => callDriver(daemon.ipamSocket, '/IpamDriver.RequestAddress', { PoolID: 'CalicoPoolIPv4' });
  const first = await Promise.all(Array.from({ length: 200 }, request));
  await daemon.stop('SIGKILL');
  daemon = await daemonFor(agent, prefix, 'burst-docker');
  const second = await Promise.all(Array.from({ length: 200 }, request));
  const answers = [...first, ...second];
  t.deepEqual(answers.filter((a) => a.status !== 200).map((a) => a.json.Err), [], 'every request served');
  const addresses = answers.map((a) => String(a.json.Address));
  t.is(new Set(addresses).size, 400, 'no address twice');
  // 400 addresses in /26 blocks: 7 blocks hold them (the pool's own network address is never handed out).
  const blocks = await blocksOf(ds, 'burst-docker');
  t.true(blocks <= 7 + 1, `${blocks} blocks for 400 addresses`);
  const state = await readIpamState(ds);
  t.deepEqual(state.problems, []);
  t.is(state.allocated.size, 400);
  const releases = await Promise.all(addresses.map((address) => callDriver(daemon.ipamSocket, '/IpamDriver.ReleaseAddress', { PoolID: 'CalicoPoolIPv4', Address: address })));
  t.true(releases.every((r) => r.status === 200));
  t.is((await readIpamState(ds)).allocated.size, 0);
  // The daemon's job gives the empty blocks back, but one spare, once empty for its delay.
  const reclaimer = new BlockReclaimer(async () => new Ipam(ds), { node: 'burst-docker', delayMs: 1, spare: 1 }, silentLogger);
  t.deepEqual(await reclaimer.reclaim(), [], 'not before the delay');
  await new Promise((resolve) => setTimeout(resolve, 5));
  t.is((await reclaimer.reclaim()).length, blocks - 1);
  t.is(await blocksOf(ds, 'burst-docker'), 1, 'one spare block stays');
  t.deepEqual((await readIpamState(ds)).problems, []);
});

/** The command names of a process's children, now (none once it is gone). */
function childrenOf(pid: number): { pid: number; comm: string }[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((task) => readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(' ').filter(Boolean))
      .map((child) => ({ pid: Number(child), comm: readFileSync(`/proc/${child}/comm`, 'utf8').trim() }));
  } catch {
    return [];
  }
}

/** What a daemon and its children started while `work` ran, sampled every few milliseconds. */
async function processesStartedDuring(daemonPid: number, work: Promise<unknown>): Promise<{ byDaemon: Set<string>; byHelper: Set<string> }> {
  const byDaemon = new Set<string>();
  const byHelper = new Set<string>();
  let done = false;
  void work.finally(() => (done = true));
  while (!done) {
    for (const child of childrenOf(daemonPid)) {
      byDaemon.add(child.comm);
      for (const grandchild of childrenOf(child.pid)) byHelper.add(grandchild.comm);
    }
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  return { byDaemon, byHelper };
}

test.serial('burst - 100 concurrent ADDs on one host and 25 on each of 4 hosts: all through the daemon, whose forks are its helper\'s; unique, no over-claim, all DELs leave nothing', async (t) => {
  const { prefix, ds } = await world.scenario('cni-burst');
  const nodes = world.agents.map((_, i) => `burst-${i}`);
  const agentDaemons = await Promise.all(world.agents.map((agent, i) => daemonFor(agent, prefix, nodes[i]!)));
  const confs = world.agents.map((_, i) => world.network('burst-net', prefix, nodes[i]!, { cniVersion: '1.0.0', daemon_socket: agentDaemons[i]!.cniSocket }));
  for (const [label, counts] of [['one host', [100, 0, 0, 0]], ['four hosts', [25, 25, 25, 25]]] as const) {
    const running = Promise.all(world.agents.map((agent, i) => burst(agent, confs[i]!, counts[i]!)));
    const started = await processesStartedDuring(agentDaemons[0]!.pid, running);
    const runs = await running;
    const all = runs.flat();
    t.deepEqual(all.filter((r) => r.run.code !== 0).map((r) => r.run.stdout), [], `${label}: every ADD succeeds`);
    // A plugin that ran the command itself (the daemon too slow to answer, say) logs on its stderr.
    t.deepEqual(all.filter((r) => r.run.stderr !== '').map((r) => r.run.stderr.slice(0, 200)), [], `${label}: every ADD answered by the daemon`);
    t.deepEqual([...started.byDaemon], ['node'], `${label}: the daemon started no command itself, only its helper`);
    t.true(started.byHelper.has('ip') || started.byHelper.has('nsenter'), `${label}: the helper started the commands (${[...started.byHelper].join(', ')})`);
    const addresses = all.map((r) => String(r.run.json!.ips[0].address));
    t.is(new Set(addresses).size, addresses.length, `${label}: no address twice`);
    for (const [i, count] of counts.entries()) {
      const blocks = await blocksOf(ds, nodes[i]!);
      t.true(blocks <= Math.ceil(count / 62) + 1, `${label}: ${nodes[i]} holds ${blocks} blocks for ${count} addresses`);
    }
    const stdin = (i: number) => JSON.stringify(confs[i]);
    await Promise.all(runs.flatMap((list, i) => list.map(async ({ id }) => {
      const del = await runPlugin(world.agents[i]!.host, join(world.pluginsDir, 'calico'), world.agents[i]!.env('DEL', id, 'eth0'), stdin(i), 120_000);
      t.is(del.code, 0, del.stdout);
      await world.agents[i]!.destroy(id);
    })));
    await assertNothingLeft(t, ds, world.agents);
  }
});

test.serial('burst - the daemon SIGKILLed during a burst: no address twice; GC and ipam check leave no leak, live workloads keep theirs', async (t) => {
  const { prefix, ds } = await world.scenario('crash-burst');
  const agent = world.agents[0]!;
  const node = 'burst-crash';
  const daemon = await daemonFor(agent, prefix, node);
  const conf = world.network('crash-net', prefix, node, { cniVersion: '1.0.0', daemon_socket: daemon.cniSocket, etcd_timeout_ms: 10_000 });
  const running = burst(agent, conf, 40);
  // Killed once it has finished a few: the others are in its hands, half done, or not yet sent.
  for (let i = 0; i < 600 && (daemon.stderr.match(/workload added/g) ?? []).length < 5; i++) await new Promise((resolve) => setTimeout(resolve, 50));
  await daemon.stop('SIGKILL');
  const runs = await running;
  const live = runs.filter((r) => r.run.code === 0);
  t.true(live.length > 0, 'the plugins carry on without the daemon');
  const addresses = live.map((r) => String(r.run.json!.ips[0].address).split('/')[0]!);
  t.is(new Set(addresses).size, addresses.length, 'no address twice');

  // What a crash can leave: addresses of attachments that never got their endpoint. GC collects them.
  const ipam = new Ipam(ds);
  const collected = await new GarbageCollector(async () => ({ ds, ipam }), undefined, { node, intervalMs: 0, graceMs: 0 }, silentLogger).collect();
  t.log(`${live.length} of ${runs.length} ADDs succeeded, ${runs.filter((r) => r.run.stderr.includes('assigned')).length} of them by the plugin itself; GC collected ${collected.length}`);
  const check = await runCalicoctl(['ipam', 'check', '--grace-period', '0'], { ETCD_ENDPOINTS: world.fabric.etcd.endpoint, ETCD_PREFIX: prefix });
  t.is(check.code, 0, check.stdout);
  for (const address of addresses) t.truthy(await ipam.ownerOf(parseAddress(address)), `${address} is still its workload's`);

  for (const { id } of runs) {
    const del = await runPlugin(agent.host, join(world.pluginsDir, 'calico'), agent.env('DEL', id, 'eth0'), JSON.stringify(conf), 120_000);
    t.is(del.code, 0, del.stdout);
    await agent.destroy(id);
  }
  await assertNothingLeft(t, ds, [agent]);
});
