import test from 'ava';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { HOST_PATH, runPlugin, type PluginRun } from '../../sim/cni-exec';
import { CniWorld, assertNothingLeft } from '../helpers/cni-world';
import type { MesosAgent } from '../../sim/mesos-agent';

let world: CniWorld;
let agent: MesosAgent;
let base: Record<string, unknown>;
let scenario: Awaited<ReturnType<CniWorld['scenario']>>;
let containerId: string;

test.before(async () => {
  world = await CniWorld.create();
  agent = await world.addAgent();
  scenario = await world.scenario('errors');
  base = { ...world.network('err-net', scenario.prefix, 'agent1'), cniVersion: '0.4.0' };
  containerId = randomUUID();
  await agent.createContainer(containerId);
});
test.after.always(async () => {
  await world?.destroy();
});

function env(overrides: Record<string, string | undefined> = {}): Record<string, string> {
  const all: Record<string, string | undefined> = {
    CNI_COMMAND: 'ADD',
    CNI_CONTAINERID: containerId,
    CNI_IFNAME: 'eth0',
    CNI_NETNS: agent.netnsPath(containerId),
    CNI_PATH: world.pluginsDir,
    PATH: HOST_PATH,
    ...overrides,
  };
  return Object.fromEntries(Object.entries(all).filter(([, v]) => v !== undefined)) as Record<string, string>;
}

async function expectError(t: import('ava').ExecutionContext, run: PluginRun, code: number, message: RegExp) {
  t.is(run.code, 1, run.stdout);
  t.is(run.json?.code, code, run.stdout);
  t.regex(run.json?.msg ?? '', message);
  t.is(run.stdout.trim().split('\n').length, 1, 'stdout holds the error object alone');
  t.false(/\n\s+at /.test(run.stdout), 'no stack trace on stdout');
}

const calico = (e: Record<string, string>, stdin: string) => runPlugin(agent.host, join(world.pluginsDir, 'calico'), e, stdin);

const CASES: [string, Record<string, string | undefined>, (b: Record<string, unknown>) => unknown, number, RegExp][] = [
  ['no CNI_COMMAND', { CNI_COMMAND: undefined }, (b) => b, 4, /CNI_COMMAND.*not set/],
  ['an unknown CNI_COMMAND', { CNI_COMMAND: 'FROB' }, (b) => b, 4, /CNI_COMMAND: "FROB" is not one of/],
  ['missing CNI_CONTAINERID and CNI_NETNS', { CNI_CONTAINERID: undefined, CNI_NETNS: undefined }, (b) => b, 4, /CNI_CONTAINERID, CNI_NETNS: required for ADD/],
  ['an interface name with "/"', { CNI_IFNAME: 'eth/0' }, (b) => b, 4, /CNI_IFNAME: "eth\/0" may hold only letters/],
  ['an interface name over 15 characters', { CNI_IFNAME: 'eth0123456789012' }, (b) => b, 4, /CNI_IFNAME.*longer than 15/],
  ['a container ID against the spec', { CNI_CONTAINERID: '-bad id' }, (b) => b, 4, /CNI_CONTAINERID: "-bad id" must start/],
  ['malformed CNI_ARGS', { CNI_ARGS: 'novalue' }, (b) => b, 4, /CNI_ARGS: "novalue" is not KEY=VALUE/],
  ['unknown CNI_ARGS keys', { CNI_ARGS: 'FOO=bar' }, (b) => b, 4, /CNI_ARGS: unknown key\(s\) FOO/],
  ['a netns that does not exist', { CNI_NETNS: '/var/run/netns/none-such' }, (b) => b, 4, /network namespace "\/var\/run\/netns\/none-such" does not exist/],
  ['unparsable stdin', {}, () => '{"cniVersion": ', 6, /cannot decode the network config/],
  ['stdin that is not an object', {}, () => '[1,2]', 6, /expected a JSON object/],
  ['stdin nested 100,000 deep', {}, (b) => `${JSON.stringify(b).slice(0, -1)},"deep":${'['.repeat(100_000)}${']'.repeat(100_000)}}`, 6, /JSON nested deeper than 64 levels/],
  ['an unsupported cniVersion', {}, (b) => ({ ...b, cniVersion: '9.9.9' }), 1, /incompatible CNI version "9\.9\.9"/],
  ['no network name', {}, (b) => ({ ...b, name: undefined }), 7, /"name" undefined must be a network name/],
  ['no ipam section', {}, (b) => ({ ...b, ipam: undefined }), 7, /"ipam" is required/],
  ['a pool CIDR that is not a network', {}, (b) => ({ ...b, ipam: { type: 'calico-ipam', ipv4_pools: ['10.200.0.1/16'] } }), 7, /ipam\.ipv4_pools.*not a network address \(did you mean 10\.200\.0\.0\/16\?\)/],
  ['an IPv6 pool in ipv4_pools', {}, (b) => ({ ...b, ipam: { type: 'calico-ipam', ipv4_pools: ['fd00::/64'] } }), 7, /not an IPv4 pool/],
  ['a pool that does not exist', {}, (b) => ({ ...b, ipam: { type: 'calico-ipam', ipv4_pools: ['no-such-pool'] } }), 7, /pool "no-such-pool" does not exist/],
  ['assign_ipv4 that is not a boolean', {}, (b) => ({ ...b, ipam: { type: 'calico-ipam', assign_ipv4: 'yes' } }), 7, /ipam\.assign_ipv4/],
  ['an MTU out of range', {}, (b) => ({ ...b, mtu: 70000 }), 7, /"mtu" 70000/],
  ['an etcd endpoint that is not a URL', {}, (b) => ({ ...b, etcd_endpoints: 'ftp://x' }), 7, /"etcd_endpoints".*must use http/],
  ['a datastore type we do not speak', {}, (b) => ({ ...b, datastore_type: 'kubernetes' }), 7, /datastore_type.*kubernetes.*not supported/],
  ['a log level we do not know', {}, (b) => ({ ...b, log_level: 'chatty' }), 7, /log_level/],
  ['a requested address outside every pool', { CNI_ARGS: 'IP=192.0.2.1' }, (b) => b, 7, /192\.0\.2\.1 is not in any enabled IP pool/],
  ['a malformed requested address', {}, (b) => ({ ...b, runtimeConfig: { ips: ['10.200.1.300'] } }), 7, /runtimeConfig\.ips.*10\.200\.1\.300/],
];

for (const [what, envOverrides, stdin, code, message] of CASES) {
  test.serial(`cni errors - ${what}: code ${code}, a clear message, nothing left`, async (t) => {
    const body = stdin(base);
    const run = await calico(env(envOverrides), typeof body === 'string' ? body : JSON.stringify(body));
    await expectError(t, run, code, message);
    await assertNothingLeft(t, scenario.ds, [agent]);
  });
}

test.serial('cni errors - an error about the environment answers in the config\'s version', async (t) => {
  for (const cniVersion of ['0.3.1', '1.0.0', '0.2.0']) {
    const run = await calico(env({ CNI_IFNAME: 'eth/0' }), JSON.stringify({ ...base, cniVersion }));
    await expectError(t, run, 4, /CNI_IFNAME/);
    t.is(run.json?.cniVersion, cniVersion);
  }
  t.is((await calico(env({ CNI_IFNAME: 'eth/0' }), 'garbage')).json?.cniVersion, '1.1.0', 'no config to read: the latest');
});

test.serial('cni errors - an unreachable etcd: code 11 naming the endpoint, within the deadline, nothing left', async (t) => {
  const started = Date.now();
  const run = await calico(env(), JSON.stringify({ ...base, etcd_endpoints: 'http://10.99.0.1:1', etcd_timeout_ms: 1500 }));
  await expectError(t, run, 11, /etcd at http:\/\/10\.99\.0\.1:1 is unavailable/);
  t.true(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
  // A silent endpoint (an address nobody answers on this fabric) hits the deadline too.
  const silentStart = Date.now();
  const silent = await calico(env(), JSON.stringify({ ...base, etcd_endpoints: 'http://10.99.0.250:2379', etcd_timeout_ms: 1500 }));
  await expectError(t, silent, 11, /etcd at http:\/\/10\.99\.0\.250:2379 is unavailable/);
  t.true(Date.now() - silentStart < 6000, `took ${Date.now() - silentStart} ms`);
  await assertNothingLeft(t, scenario.ds, [agent]);
});

test.serial('cni errors - the IPAM plugin on its own refuses bad input the same way', async (t) => {
  const run = await runPlugin(agent.host, join(world.pluginsDir, 'calico-ipam'), env({ CNI_CONTAINERID: undefined }), JSON.stringify(base));
  await expectError(t, run, 4, /CNI_CONTAINERID/);
  const ok = await runPlugin(agent.host, join(world.pluginsDir, 'calico-ipam'), env(), JSON.stringify(base));
  t.is(ok.code, 0, ok.stdout);
  t.regex(ok.json!.ips[0].address, /^10\.200\./);
  t.is((await runPlugin(agent.host, join(world.pluginsDir, 'calico-ipam'), env({ CNI_COMMAND: 'DEL' }), JSON.stringify(base))).code, 0);
  await assertNothingLeft(t, scenario.ds, [agent]);
});
