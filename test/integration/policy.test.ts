import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { NFT } from '../../shared/dataplane/nftables';
import { NodeDaemon } from '../../sim/daemon';
import type { MesosAgent } from '../../sim/mesos-agent';
import { waitFor } from '../../sim/wait';
import { assertNothingLeft, useCniWorld } from '../helpers/cni-world';

const setup = useCniWorld(test);

interface Task {
  readonly id: string;
  readonly ip: string;
}

async function launch(agent: MesosAgent, network: Record<string, unknown>, labels?: Record<string, string>): Promise<Task> {
  const id = randomUUID();
  const launched = await agent.launch(id, [{ network: network as never, ...(labels ? { labels } : {}) }]);
  if (launched.runs[0]!.code !== 0) throw new Error(launched.runs[0]!.stdout);
  return { id, ip: launched.ips[0]!.ip4!.split('/')[0]! };
}

/** Whether `from` gets an answer from `to`, once the policy in force has settled. */
async function reaches(agent: MesosAgent, from: Task, to: Task): Promise<boolean> {
  return agent.container(from.id).ping(to.ip);
}

/** Waits until the reachability is as expected (policy is programmed a moment after a change). */
async function settlesTo(agent: MesosAgent, from: Task, to: Task, expected: boolean, withinMs = 8000): Promise<boolean> {
  try {
    await waitFor(`${from.ip} ${expected ? 'reaching' : 'not reaching'} ${to.ip}`, async () => (await reaches(agent, from, to)) === expected, withinMs);
    return true;
  } catch {
    return false;
  }
}

/** A TCP listener on `port` in the task's namespace (busybox nc, accepting connection after connection). */
function listen(agent: MesosAgent, task: Task, port: number): () => void {
  const child = spawn('nsenter', [`--net=${agent.container(task.id).path}`, 'busybox', 'nc', '-ll', '-p', String(port), '-e', '/bin/true'], { stdio: 'ignore' });
  return () => child.kill('SIGKILL');
}

/** Whether a TCP connection from `from` to `to`:`port` is made (within a second). */
async function connects(agent: MesosAgent, from: Task, to: Task, port: number): Promise<boolean> {
  try {
    await agent.container(from.id).exec('busybox', ['nc', '-w', '1', to.ip, String(port)], { input: 'hi\n', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

async function startDaemon(prefix: string): Promise<NodeDaemon> {
  return NodeDaemon.start(setup.agent.host, ['--etcd-endpoints', setup.world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', 'agent1', '--no-routes', '--metrics-address', '']);
}

/** A datastore of the test's own, this agent's daemon on it, and the networks netA and netB. */
async function policyScenario(t: ExecutionContext, label: string) {
  const { prefix, ds } = await setup.world.scenario(label);
  const daemon = await startDaemon(prefix);
  const network = (name: string) => setup.world.network(name, prefix, 'agent1', { daemon_socket: daemon.cniSocket });
  // `daemon` may be replaced by a restarted one: the teardown stops whichever runs last.
  const scenario = { prefix, ds, daemon, netA: network('netA'), netB: network('netB') };
  t.teardown(() => scenario.daemon.destroy());
  return scenario;
}

test.serial('policy - tasks on one network reach each other, tasks of another network do not, both ways; a policy opens exactly what it says; labels forge nothing; garbage in etcd is logged and skipped', async (t) => {
  const { ds, daemon, netA, netB } = await policyScenario(t, 'isolation');
  const a1 = await launch(setup.agent, netA);
  const a2 = await launch(setup.agent, netA);
  const b1 = await launch(setup.agent, netB);
  // A task of netA that claims netB's membership label: the label is dropped.
  const forger = await launch(setup.agent, netA, { 'pcn.netB': '', 'projectcalico.org/namespace': 'x' });

  t.true(await settlesTo(setup.agent, a1, a2, true), 'same network reaches');
  t.true(await reaches(setup.agent, a2, a1));
  t.false(await reaches(setup.agent, a1, b1), 'netA does not reach netB');
  t.false(await reaches(setup.agent, b1, a1), 'netB does not reach netA');
  t.false(await reaches(setup.agent, forger, b1), 'a forged membership label gains nothing');
  t.true(await reaches(setup.agent, forger, a1), 'the forger is still a member of its own network');
  const forgerRecord = (await ds.resources.list('WorkloadEndpoint')).find((e) => e.spec.containerID === forger.id)!;
  t.false('pcn.netB' in (forgerRecord.metadata.labels ?? {}));
  t.is(forgerRecord.metadata.labels?.['projectcalico.org/namespace'], 'default');

  // ICMP from netB to netA, by a global policy on netA's members: Allow, then profiles for the rest.
  await ds.resources.create({
    kind: 'GlobalNetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name: 'icmp-from-b' },
    spec: { order: 10, selector: 'has(pcn.netA)', ingress: [{ action: 'Allow', protocol: 'ICMP', source: { selector: 'has(pcn.netB)' } }, { action: 'Pass' }] },
  });
  t.true(await settlesTo(setup.agent, b1, a1, true), 'the policy lets netB ping netA');
  t.true(await reaches(setup.agent, a2, a1), 'Pass hands the rest to the profile: netA still reaches netA');
  t.false(await reaches(setup.agent, a1, b1), 'nothing opened the other way');
  // A lower order Deny wins over the Allow.
  await ds.resources.create({
    kind: 'GlobalNetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name: 'deny-b' },
    spec: { order: 5, selector: 'has(pcn.netA)', ingress: [{ action: 'Deny', source: { selector: 'has(pcn.netB)' } }] },
  });
  t.true(await settlesTo(setup.agent, b1, a1, false), 'the earlier Deny wins');
  t.true(await reaches(setup.agent, a2, a1), 'deny-b decides nothing for netA: the next policy\'s Pass hands it to the profile');
  await ds.resources.delete('GlobalNetworkPolicy', 'icmp-from-b');
  t.true(await settlesTo(setup.agent, a2, a1, false), 'a policy that selects an endpoint and decides nothing, with no Pass after it, denies');
  await ds.resources.delete('GlobalNetworkPolicy', 'deny-b');
  t.true(await settlesTo(setup.agent, a2, a1, true));
  t.true(await settlesTo(setup.agent, b1, a1, false), 'deleting the policy restores isolation');

  // Garbage written straight into etcd: logged with its key and contained; the rest stays enforced
  // (the policy, never read good, denies only what its selector names: nobody here).
  const garbage = [
    { key: ds.keys.resource('GlobalNetworkPolicy', 'garbage'), put: '{"kind":"GlobalNetworkPolicy","metadata":{"name":"garbage"},"spec":{"selector":"has(pcn.netC)","ingress":[{"action":"Allow","source":{"selector":"has(("}}]}}' },
    { key: ds.keys.resource('WorkloadEndpoint', 'agent1-cni-garbage-eth0', 'default'), put: '{"kind":"WorkloadEndpoint","metadata":{"name":"x"},"spec":{"node":"agent1","interfaceName":"cali\\"; flush ruleset","ipNetworks":["10.200.255.1/32"]}}' },
    { key: ds.keys.resource('Profile', 'junk'), put: 'not json' },
  ];
  await ds.kv.txn(garbage);
  const logged = (key: string) => daemon.stderr.split('\n').some((line) => line.includes('skipping a malformed record') && line.includes(`key=${key} `));
  for (const { key } of garbage) await waitFor(`the daemon to log ${key}`, () => logged(key), 5000);
  t.true(await reaches(setup.agent, a2, a1), 'the rest stays enforced');
  t.false(await reaches(setup.agent, b1, a1));
  await ds.kv.txn(garbage.map(({ key }) => ({ key, delete: true as const })));

  // Fail closed: a cali link nobody recorded passes nothing, and the table is ours alone.
  const { stdout } = await setup.agent.host.exec(NFT, ['list', 'tables']);
  t.deepEqual(stdout.trim().split('\n'), ['table inet calico']);

  for (const task of [a1, a2, b1, forger]) for (const r of await setup.agent.destroy(task.id)) t.is(r.code, 0, r.stdout);
  await assertNothingLeft(t, ds, [setup.agent]);
  await waitFor('the daemon to drop the endpoints', async () => !(await setup.agent.host.exec(NFT, ['list', 'map', 'inet', 'calico', 'ingress'])).stdout.includes('"cali'), 5000);
});

test.serial('policy - TCP 8080 from netB to netA opens 8080 only; a label change moves an endpoint in and out of a selector; the host reaches its workloads, they reach it as FelixConfiguration says; a NetworkPolicy stays in its namespace', async (t) => {
  const { ds, netA, netB } = await policyScenario(t, 'tcp');
  const a = await launch(setup.agent, netA);
  const a2 = await launch(setup.agent, netA);
  const b = await launch(setup.agent, netB);
  const stops = [listen(setup.agent, a, 8080), listen(setup.agent, a, 8081)];
  t.teardown(() => stops.forEach((stop) => stop()));
  t.true(await settlesTo(setup.agent, a2, a, true));
  t.false(await connects(setup.agent, b, a, 8080), 'isolated before the policy');

  await ds.resources.create({
    kind: 'GlobalNetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name: 'tcp-8080' },
    spec: { selector: 'has(pcn.netA)', ingress: [{ action: 'Allow', protocol: 'TCP', source: { selector: 'has(pcn.netB)' }, destination: { ports: [8080] } }, { action: 'Pass' }] },
  });
  await waitFor('8080 to open', () => connects(setup.agent, b, a, 8080), 8000);
  t.false(await connects(setup.agent, b, a, 8081), '8081 stays closed');
  t.false(await reaches(setup.agent, b, a), 'ping stays dropped');

  // A policy on an endpoint label: a's record gains app=web (as an orchestrator would write it).
  await ds.resources.create({
    kind: 'GlobalNetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name: 'web-icmp' },
    spec: { order: 1, selector: "app == 'web'", ingress: [{ action: 'Allow', protocol: 'ICMP', source: { selector: 'has(pcn.netB)' } }, { action: 'Pass' }] },
  });
  const relabel = async (labels: Record<string, string>) => {
    const record = (await ds.resources.list('WorkloadEndpoint')).find((e) => e.spec.containerID === a.id)!;
    await ds.resources.update({ ...record, metadata: { ...record.metadata, labels: { ...record.metadata.labels, ...labels } } });
  };
  await relabel({ app: 'web' });
  t.true(await settlesTo(setup.agent, b, a, true), 'the label moved a into the selector');
  await relabel({ app: 'db' });
  t.true(await settlesTo(setup.agent, b, a, false), 'and out again');

  // The host reaches its own workloads; what they send to the host follows defaultEndpointToHostAction.
  const hostIp = (await setup.agent.host.json<{ addr_info: { family: string; local: string }[] }[]>('addr', 'show', 'dev', 'eth0'))[0]!.addr_info.find((a) => a.family === 'inet')!.local;
  t.true(await setup.agent.host.ping(a.ip), 'the host reaches its workload');
  t.false(await reaches(setup.agent, a, { id: 'host', ip: hostIp }), 'a workload does not reach its host by default (Drop)');
  await ds.resources.create({ kind: 'FelixConfiguration', apiVersion: 'projectcalico.org/v3', metadata: { name: 'default' }, spec: { defaultEndpointToHostAction: 'Accept' } });
  t.true(await settlesTo(setup.agent, a, { id: 'host', ip: hostIp }, true), 'with Accept it does');
  await ds.resources.delete('FelixConfiguration', 'default');
  t.true(await settlesTo(setup.agent, a, { id: 'host', ip: hostIp }, false), 'back to Drop');

  // A NetworkPolicy denying everything in another namespace leaves these tasks (namespace default) alone.
  await ds.resources.create({ kind: 'NetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name: 'deny-all', namespace: 'libnetwork' }, spec: { selector: 'all()', types: ['Ingress', 'Egress'] } });
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.true(await connects(setup.agent, b, a, 8080), 'another namespace\'s policy changes nothing here');
  // The same in their own namespace closes everything, 8080 included.
  await ds.resources.create({ kind: 'NetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name: 'deny-all', namespace: 'default' }, spec: { order: 0, selector: 'all()', types: ['Ingress', 'Egress'], ingress: [{ action: 'Deny' }], egress: [{ action: 'Deny' }] } });
  await waitFor('8080 to close', async () => !(await connects(setup.agent, b, a, 8080)), 8000);
  t.false(await reaches(setup.agent, a2, a), 'Deny in both directions: nothing passes');

  for (const task of [a, a2, b]) for (const r of await setup.agent.destroy(task.id)) t.is(r.code, 0, r.stdout);
});

test.serial('policy - fail closed: a cali veth nobody recorded passes nothing; the daemon killed and restarted never lets isolation lapse; etcd out of reach keeps the rules, and changes made meanwhile arrive', async (t) => {
  const scenario = await policyScenario(t, 'closed');
  const { prefix, ds, netA, netB } = scenario;
  const a1 = await launch(setup.agent, netA);
  const a2 = await launch(setup.agent, netA);
  const b1 = await launch(setup.agent, netB);
  t.true(await settlesTo(setup.agent, a1, a2, true));

  // A hand-made workload: a veth named like ours, an address of the pool, no record.
  const rogue = randomUUID();
  await setup.agent.createContainer(rogue);
  const rogueNs = setup.agent.container(rogue);
  await setup.agent.host.ip('link', 'add', 'calirogue', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', rogueNs.name);
  await setup.agent.host.ip('link', 'set', 'calirogue', 'up');
  await setup.agent.host.ip('route', 'add', '10.200.255.250/32', 'dev', 'calirogue');
  await setup.agent.host.exec('sysctl', ['-qw', 'net.ipv4.conf.calirogue.proxy_arp=1', 'net.ipv4.conf.calirogue.forwarding=1']);
  await rogueNs.ip('addr', 'add', '10.200.255.250/32', 'dev', 'eth0');
  await rogueNs.ip('link', 'set', 'eth0', 'up');
  await rogueNs.ip('route', 'add', '169.254.1.1', 'dev', 'eth0');
  await rogueNs.ip('route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0');
  t.false(await rogueNs.ping(a1.ip), 'the unrecorded veth reaches nothing');
  t.false(await reaches(setup.agent, a1, { id: rogue, ip: '10.200.255.250' }), 'and nothing reaches it');
  await setup.agent.host.ip('link', 'del', 'calirogue');
  await setup.agent.destroy(rogue);

  // The daemon killed and restarted: a probe across networks never gets an answer meanwhile.
  let crossAnswered = false;
  let probing = true;
  const probe = (async () => {
    while (probing) crossAnswered ||= await reaches(setup.agent, b1, a1);
  })();
  await scenario.daemon.stop('SIGKILL');
  t.true(await reaches(setup.agent, a1, a2), 'with the daemon gone, the table stays in force');
  scenario.daemon = await startDaemon(prefix);
  await waitFor('the restarted daemon to program', () => scenario.daemon.stderr.includes('policy programmed'), 10_000);
  t.true(await reaches(setup.agent, a1, a2), 'allowed traffic resumes');
  probing = false;
  await probe;
  t.false(crossAnswered, 'isolation never lapsed');

  // etcd out of reach: the host's link to the fabric goes down; the rules stay; a policy written
  // meanwhile arrives when the link comes back.
  await setup.agent.host.ip('link', 'set', 'eth0', 'down');
  await new Promise((resolve) => setTimeout(resolve, 1500));
  t.true(await reaches(setup.agent, a1, a2));
  t.false(await reaches(setup.agent, b1, a1));
  await ds.resources.create({ kind: 'GlobalNetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name: 'b-to-a' }, spec: { selector: 'has(pcn.netA)', ingress: [{ action: 'Allow', source: { selector: 'has(pcn.netB)' } }, { action: 'Pass' }] } });
  await setup.agent.host.ip('link', 'set', 'eth0', 'up');
  t.true(await settlesTo(setup.agent, b1, a1, true, 30_000), 'the change made while etcd was out of reach arrives');

  for (const task of [a1, a2, b1]) for (const r of await setup.agent.destroy(task.id)) t.is(r.code, 0, r.stdout);
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('policy - Mesos NetworkInfo groups are extra profiles: tasks of two networks sharing a group reach each other, the rest stays apart', async (t) => {
  const { ds, netA, netB } = await policyScenario(t, 'groups');
  const launchIn = async (network: typeof netA, groups: string[]) => {
    const id = randomUUID();
    const launched = await setup.agent.launch(id, [{ network, groups }]);
    if (launched.runs[0]!.code !== 0) throw new Error(launched.runs[0]!.stdout);
    return { id, ip: launched.ips[0]!.ip4!.split('/')[0]! };
  };
  const a = await launchIn(netA, ['g1']);
  const b = await launchIn(netB, ['g1']);
  const c = await launchIn(netB, []);
  t.deepEqual((await ds.resources.list('WorkloadEndpoint')).find((e) => e.spec.containerID === a.id)!.spec.profiles, ['netA', 'g1']);
  t.truthy(await ds.resources.get('Profile', 'g1'));
  t.true(await settlesTo(setup.agent, a, b, true), 'a group joins two networks');
  t.true(await reaches(setup.agent, b, a));
  t.true(await reaches(setup.agent, c, b), 'c reaches b on their network');
  t.false(await reaches(setup.agent, c, a), 'but not a, which shares only a group with b');
  t.false(await reaches(setup.agent, a, c));
  for (const task of [a, b, c]) for (const r of await setup.agent.destroy(task.id)) t.is(r.code, 0, r.stdout);
});
