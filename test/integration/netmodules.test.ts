import test, { type ExecutionContext } from 'ava';
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { formatAddress } from '../../shared/net';
import { NodeDaemon } from '../../sim/daemon';
import { NetmodulesAgent } from '../../sim/netmodules-agent';
import { waitFor } from '../../sim/wait';
import { Netns } from '../../sim/netns';
import { assertNothingLeft, useCniWorld } from '../helpers/cni-world';
import { readIpamState } from '../helpers/ipam-state';

const setup = useCniWorld(test);
const NODE = 'agent1';

async function agentFor(t: ExecutionContext, label: string, pools?: { v4?: string; v6?: string }) {
  const { prefix, ds, ipam } = await setup.world.scenario(label, pools);
  const env = { ETCD_ENDPOINTS: setup.world.fabric.hostEndpoints, ETCD_PREFIX: prefix, NODENAME: NODE };
  const agent = new NetmodulesAgent(setup.agent.host, env, '10.99.0.11');
  t.teardown(() => agent.cleanupAll());
  return { agent, ds, ipam, prefix };
}

test.serial('netmodules - prepare, isolate and cleanup as the isolator does them, through the node daemon: addresses, a wired container, its endpoint; a netgroup reaches itself, another netgroup does not; isolating twice is refused; nothing left', async (t) => {
  const { prefix, ds } = await setup.world.scenario('nm-daemon');
  const daemon = await NodeDaemon.start(setup.agent.host, ['--etcd-endpoints', setup.world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', NODE, '--no-routes', '--metrics-address', '']);
  t.teardown(() => daemon.destroy());
  // The daemon's own jobs (policy) follow its prefix; the commands it serves, the agent's environment.
  const agent = new NetmodulesAgent(setup.agent.host, { ETCD_ENDPOINTS: setup.world.fabric.hostEndpoints, ETCD_PREFIX: prefix, NODENAME: NODE, CALICO_CNI_SOCKET: daemon.cniSocket }, '10.99.0.11');
  t.teardown(() => agent.cleanupAll());
  const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
  const first = await agent.launch(a, { netgroups: ['group_a'], labels: { app: 'web', 'pcn.group_b': '' } });
  const second = await agent.launch(b, { netgroups: ['group_a'], autoIpv4: 2 });
  const third = await agent.launch(c, { netgroups: ['group_b'] });
  t.deepEqual([first.error, second.error, third.error], [undefined, undefined, undefined]);
  t.is(first.ips.length, 1);
  t.is(second.ips.length, 2);
  await waitFor('the daemon to program the containers', async () => agent.container(a).ping(second.ips[1]!), 8000);
  t.true(await agent.container(b).ping(first.ips[0]!), 'one netgroup reaches itself, every address');
  t.false(await agent.container(c).ping(first.ips[0]!), 'another netgroup does not');
  t.false(await agent.container(a).ping(third.ips[0]!), 'a forged membership label gains nothing');
  t.regex(daemon.stderr, /plugin=calico_mesos command=isolate/, 'the daemon served the commands');

  const endpoints = await ds.resources.list('WorkloadEndpoint');
  const endpoint = endpoints.find((e) => e.spec.workload === a)!;
  t.like(endpoint.spec, { orchestrator: 'mesos', node: NODE, endpoint: 'eth0', profiles: ['group_a'], ipNetworks: [`${first.ips[0]}/32`] });
  t.is(endpoint.metadata.labels?.app, 'web');
  t.false('pcn.group_b' in (endpoint.metadata.labels ?? {}), 'a reserved label key is dropped');
  t.is(endpoint.metadata.annotations?.['projectcalico.org/mesos-hostname'], '10.99.0.11');
  t.truthy(await ds.resources.get('Profile', 'group_a'), 'the netgroup has its profile');
  // (Every pid given to isolate is of a process in a namespace the test made: were a check to
  // fail, nothing would be wired outside it.)
  const stray = spawn('ip', ['netns', 'exec', agent.container(a).name, 'sleep', '60'], { stdio: 'ignore' });
  t.teardown(() => stray.kill('SIGKILL'));
  const again = await agent.call('isolate', { hostname: 'h', container_id: a, pid: stray.pid, ipv4_addrs: first.ips });
  t.regex(String(again.answer?.error), new RegExp(`container ${a} is already isolated`));

  for (const id of [a, b, c]) for (const call of await agent.destroy(id)) t.is(call.answer?.error, null, call.stdout);
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('netmodules - all or nothing: too many addresses, a reserve with one taken or outside the pools, an isolate of a dead pid or of addresses not allocated so, a release of another\'s address; each an error naming it, nothing kept', async (t) => {
  const { agent, ds, ipam } = await agentFor(t, 'nm-errors', { v4: '10.201.0.0/26', v6: 'fd00:201::/122' });
  const call = (command: string, args: Record<string, unknown>) => agent.call(command, { hostname: 'h', ...args });

  const tooMany = await call('allocate', { uid: 'greedy', num_ipv4: 100 });
  t.is(tooMany.code, 1);
  t.regex(String(tooMany.answer?.error), /free|no free address/);
  t.deepEqual([...(await readIpamState(ds)).allocated.keys()], [], 'nothing kept of a short allocation');

  const held = await call('allocate', { uid: 'holder', num_ipv4: 1 });
  t.is(held.answer?.error, null, held.stdout);
  const taken = held.answer!.ipv4![0]!;
  const clash = await call('reserve', { uid: 'clash', ipv4_addrs: ['10.201.0.5', taken] });
  t.regex(String(clash.answer?.error), new RegExp(`${taken.replaceAll('.', '\\.')} is already in use`));
  const outside = await call('reserve', { uid: 'outside', ipv4_addrs: ['10.201.0.6', '192.0.2.1'] });
  t.regex(String(outside.answer?.error), /192\.0\.2\.1 is not in any/);
  t.deepEqual([...(await readIpamState(ds)).allocated.keys()], [taken], 'only the holder\'s address is allocated');

  const dead = await call('isolate', { container_id: 'c-dead', pid: 4_000_000, ipv4_addrs: [taken] });
  t.regex(String(dead.answer?.error), /process 4000000 does not exist/);
  const cniOwned = await ipam.autoAssign({ handle: `cni:${NODE}:net:someone:eth0`, node: NODE, num4: 1, num6: 0 });
  const stolen = await call('release', { ips: [formatAddress(cniOwned.ipv4[0]!)] });
  t.regex(String(stolen.answer?.error), /not released: .* not a net-modules container/, 'release by address frees only net-modules addresses');

  const executorNs = await Netns.create('nmexec');
  const executor = spawn('ip', ['netns', 'exec', executorNs.name, 'sleep', '60'], { stdio: 'ignore' });
  t.teardown(async () => {
    executor.kill('SIGKILL');
    await executorNs.destroy();
  });
  // Isolating an address nobody allocated to a net-modules container is refused.
  const foreign = await call('isolate', { container_id: 'c1', pid: executor.pid, ipv4_addrs: ['10.201.0.6'] });
  t.regex(String(foreign.answer?.error), /10\.201\.0\.6 was not allocated to a net-modules container of this host/);

  const released = await call('release', { uid: 'holder' });
  t.is(released.answer?.error, null);
  t.is((await call('release', { ips: [taken] })).answer?.error, null, 'releasing what is free succeeds');
  t.is((await call('cleanup', { container_id: 'never-seen' })).answer?.error, null, 'cleanup of an unknown container succeeds');
  await ipam.releaseByHandle(`cni:${NODE}:net:someone:eth0`);
  t.deepEqual([...(await readIpamState(ds)).allocated.keys()], []);
});

test.serial('netmodules - every answer is exactly one JSON object, whatever the input; etcd out of reach is named within the deadline', async (t) => {
  const { agent } = await agentFor(t, 'nm-output');
  for (const raw of ['', 'not json', '[]', '{"command": 7}', JSON.stringify({ command: 'allocate', args: { hostname: 'h', uid: 'u', num_ipv4: 'abc' } }), 'x'.repeat(1 << 20)]) {
    const run = await agent.call('', {}, raw);
    t.is(run.code, 1);
    t.truthy(run.answer, `stdout is one JSON object: ${run.stdout.slice(0, 100)}`);
    t.is(typeof run.answer?.error, 'string');
    t.is(run.stdout.trim().split('\n').length, 1);
  }
  const deep = await agent.call('', {}, `{"command":"allocate","args":{"labels":${'['.repeat(10_000)}${']'.repeat(10_000)}}}`);
  t.regex(String(deep.answer?.error), /invalid request: JSON nested deeper than 64 levels/);
  const offline = new NetmodulesAgent(setup.agent.host, { ETCD_ENDPOINTS: 'http://10.99.0.1:1', ETCD_TIMEOUT_MS: '1000', NODENAME: NODE }, 'h');
  const started = Date.now();
  const run = await offline.call('allocate', { hostname: 'h', uid: 'u', num_ipv4: 1 });
  t.regex(String(run.answer?.error), /etcd at http:\/\/10\.99\.0\.1:1 is unavailable/);
  t.true(Date.now() - started < 15_000, 'within the deadline');
});
