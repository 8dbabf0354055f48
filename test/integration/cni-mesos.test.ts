import test from 'ava';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertNothingLeft, useCniWorld } from '../helpers/cni-world';
import { handleOf, hostVethName } from '../../shared/endpoints/identity';

const setup = useCniWorld(test);

const NODE = 'agent1';

test.serial('cni mesos - two tasks on one agent get addresses Mesos can read, and ping each other', async (t) => {
  const { prefix, ds } = await setup.world.scenario('ping');
  const network = setup.world.network('calico-net', prefix, NODE);
  const [a, b] = [randomUUID(), randomUUID()];
  const first = await setup.agent.launch(a, [{ network }]);
  const second = await setup.agent.launch(b, [{ network }]);
  for (const launch of [first, second]) {
    t.is(launch.runs[0]!.code, 0, launch.runs[0]!.stdout + launch.runs[0]!.stderr);
    t.deepEqual(Object.keys(launch.runs[0]!.json!).sort(), ['cniVersion', 'dns', 'ip4'], 'a 0.2.0 result: ip4, no 0.3 fields');
    t.is(launch.runs[0]!.json!.cniVersion, '0.2.0');
    t.regex(launch.ips[0]!.ip4!, /^10\.200\.\d+\.\d+\/32$/);
  }
  const addressOf = (l: typeof first) => l.ips[0]!.ip4!.split('/')[0]!;
  t.true(await setup.agent.container(a).ping(addressOf(second)), 'task a reaches task b');
  t.true(await setup.agent.container(b).ping(addressOf(first)), 'task b reaches task a');

  const endpoints = await ds.resources.list('WorkloadEndpoint', 'default');
  t.is(endpoints.length, 2);
  const endpoint = endpoints.find((e) => e.spec.containerID === a)!;
  t.is(endpoint.metadata.name, `${NODE}-cni-${a.replace(/-/g, '--')}-eth0`);
  t.deepEqual(endpoint.spec.profiles, ['calico-net']);
  t.is(endpoint.spec.orchestrator, 'cni');
  t.is(endpoint.spec.interfaceName, hostVethName({ orchestrator: 'cni', node: NODE, network: 'calico-net', containerId: a, ifname: 'eth0' }));
  t.is(endpoint.metadata.annotations?.['projectcalico.org/owner'], `cni:${NODE}:calico-net:${a}:eth0`);
  const handle = await ds.kv.get(ds.keys.handle(handleOf({ orchestrator: 'cni', node: NODE, network: 'calico-net', containerId: a, ifname: 'eth0' })));
  t.is(endpoint.metadata.resourceVersion, handle?.modRevision, 'the record was written in the allocation\'s transaction');
  const profile = await ds.resources.get('Profile', 'calico-net');
  t.deepEqual(profile?.spec.labelsToApply, { 'pcn.calico-net': '' });
  t.true(readFileSync(join(setup.world.logDir, 'cni.log'), 'utf8').includes('workload added'), 'logs go to log_file_path');

  for (const id of [a, b]) for (const r of await setup.agent.destroy(id)) t.is(r.code, 0, r.stdout);
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('cni mesos - a task on two networks gets eth0 and eth1, attached in parallel', async (t) => {
  const { prefix, ds } = await setup.world.scenario('two-nets');
  const id = randomUUID();
  const launch = await setup.agent.launch(id, [{ network: setup.world.network('net-a', prefix, NODE) }, { network: setup.world.network('net-b', prefix, NODE) }]);
  t.deepEqual(launch.runs.map((r) => r.code), [0, 0], launch.runs.map((r) => r.stdout).join('\n'));
  const links = await setup.agent.container(id).json<{ ifname: string }[]>('link', 'show');
  t.deepEqual(links.map((l) => l.ifname).sort(), ['eth0', 'eth1', 'lo']);
  const endpoints = await ds.resources.list('WorkloadEndpoint', 'default');
  t.deepEqual(endpoints.map((e) => [e.spec.endpoint, e.spec.profiles[0]]).sort(), [['eth0', 'net-a'], ['eth1', 'net-b']]);
  t.not(endpoints[0]!.spec.interfaceName, endpoints[1]!.spec.interfaceName, 'each interface has its own host veth');
  for (const r of await setup.agent.destroy(id)) t.is(r.code, 0, r.stdout);
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('cni mesos - labels land on the endpoint; a static address label is honoured', async (t) => {
  const { prefix, ds } = await setup.world.scenario('labels');
  const id = randomUUID();
  const launch = await setup.agent.launch(id, [{
    network: setup.world.network('calico-net', prefix, NODE),
    labels: { app: 'web server', 'org.example/tier': 'front', ipv4_addrs: '["10.200.77.7"]' },
  }]);
  t.is(launch.runs[0]!.code, 0, launch.runs[0]!.stdout);
  t.is(launch.ips[0]!.ip4, '10.200.77.7/32');
  const [endpoint] = await ds.resources.list('WorkloadEndpoint', 'default');
  t.deepEqual(endpoint!.metadata.labels, {
    app: 'web-server',
    'org.example.tier': 'front',
    'projectcalico.org/namespace': 'default',
    'projectcalico.org/orchestrator': 'cni',
  });
  // The same address for another task is refused, and that task is left with nothing.
  const other = randomUUID();
  const clash = await setup.agent.launch(other, [{ network: setup.world.network('calico-net', prefix, NODE), labels: { ipv4_addrs: '10.200.77.7' } }]);
  t.is(clash.runs[0]!.code, 1);
  t.is(clash.runs[0]!.json!.code, 7);
  t.regex(clash.runs[0]!.json!.msg, /10\.200\.77\.7 is already in use/);
  for (const r of await setup.agent.destroy(other)) t.is(r.code, 0);
  for (const r of await setup.agent.destroy(id)) t.is(r.code, 0);
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('cni mesos - DEL without CNI_NETNS after the namespace is gone still frees everything', async (t) => {
  const { prefix, ds } = await setup.world.scenario('netns-gone');
  const id = randomUUID();
  const launch = await setup.agent.launch(id, [{ network: setup.world.network('calico-net', prefix, NODE, { ipam: { type: 'calico-ipam', assign_ipv6: 'true' } }) }]);
  t.is(launch.runs[0]!.code, 0, launch.runs[0]!.stdout);
  t.truthy(launch.ips[0]!.ip6, 'an IPv6 address when assign_ipv6 is "true"');
  const runs = await setup.agent.destroy(id, { netnsGone: true });
  t.deepEqual(runs.map((r) => r.code), [0], runs.map((r) => r.stdout).join());
  await assertNothingLeft(t, ds, [setup.agent]);
});
