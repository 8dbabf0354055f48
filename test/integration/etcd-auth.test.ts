/**
 * etcd with authentication on, and a role that may read and write our prefix only: the daemon, the
 * plugins (through it and on their own), calicoctl and calico_mesos work with a user and password;
 * a missing or wrong password, or a prefix outside the role, is a clear refusal naming etcd.
 */
import test from 'ava';
import { randomUUID } from 'node:crypto';
import { Datastore, etcdSettingsFrom } from '../../shared/datastore';
import { Ipam } from '../../shared/ipam/ipam';
import { runCalicoctl } from '../../sim/calicoctl';
import { NodeDaemon } from '../../sim/daemon';
import type { MesosAgent } from '../../sim/mesos-agent';
import { NetmodulesAgent } from '../../sim/netmodules-agent';
import { waitFor } from '../../sim/wait';
import { CniWorld } from '../../sim/world';

const PREFIX = '/calico-auth';
const USER = { etcd_username: 'calico', etcd_password: 'calico-secret' };

let world: CniWorld;
let agent: MesosAgent;
let daemon: NodeDaemon | undefined;

test.before(async () => {
  world = await CniWorld.create();
  agent = await world.addAgent();
  const etcdctl = (...args: string[]) => world.fabric.fabric.exec('etcdctl', ['--endpoints', world.fabric.hostEndpoints, ...args]);
  await etcdctl('user', 'add', 'root', '--new-user-password=root-secret');
  await etcdctl('role', 'add', 'calico');
  await etcdctl('role', 'grant-permission', '--prefix=true', 'calico', 'readwrite', `${PREFIX}/`);
  await etcdctl('user', 'add', USER.etcd_username, `--new-user-password=${USER.etcd_password}`);
  await etcdctl('user', 'grant-role', USER.etcd_username, 'calico');
  await etcdctl('auth', 'enable');
  const ds = await Datastore.connect(etcdSettingsFrom({ etcd_endpoints: world.fabric.etcd.endpoint, etcd_prefix: PREFIX, ...USER }, {}));
  try {
    await new Ipam(ds).createPool('pool4', { cidr: '10.230.0.0/16' });
  } finally {
    ds.close();
  }
});
test.after.always(async () => {
  await daemon?.destroy();
  await world?.destroy();
});

test.serial('etcd auth - with a user limited to our prefix: the daemon, the plugins through it and on their own, calicoctl and calico_mesos all work', async (t) => {
  daemon = await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.hostEndpoints, '--etcd-prefix', PREFIX, '--etcd-username', USER.etcd_username, '--etcd-password', USER.etcd_password, '--nodename', 'auth-1', '--metrics-address', '']);
  const network = world.network('net', PREFIX, 'auth-1', { daemon_socket: daemon.cniSocket, etcd_prefix: PREFIX, ...USER });
  const [a, b] = [randomUUID(), randomUUID()];
  const launchA = await agent.launch(a, [{ network }]);
  const launchB = await agent.launch(b, [{ network: { ...network, daemon_socket: '' } }]);
  t.is(launchA.runs[0]!.code, 0, launchA.runs[0]!.stdout);
  t.is(launchB.runs[0]!.code, 0, launchB.runs[0]!.stdout);
  // The daemon's watch programs both: policy through an authenticated watch.
  await waitFor('the two tasks to reach each other', () => agent.container(a).ping(launchB.ips[0]!.ip4!.split('/')[0]!), 15_000).catch((err) => {
    t.log(daemon!.stderr.split('\n').filter((l) => !l.includes('DEBUG')).slice(-20).join('\n'));
    throw err;
  });

  const env = { ETCD_ENDPOINTS: world.fabric.etcd.endpoint, ETCD_PREFIX: PREFIX, ETCD_USERNAME: USER.etcd_username, ETCD_PASSWORD: USER.etcd_password };
  const show = await runCalicoctl(['ipam', 'show'], env);
  t.is(show.code, 0, show.stderr);
  t.regex(show.stdout, /10\.230\.0\.0\/16/);
  const init = await runCalicoctl(['datastore', 'init'], env);
  t.is(init.code, 0, init.stderr);
  t.notRegex(init.stdout, /WARNING/, 'a user was given: no warning');

  const mesos = new NetmodulesAgent(agent.host, { ETCD_ENDPOINTS: world.fabric.hostEndpoints, ETCD_PREFIX: PREFIX, ETCD_USERNAME: USER.etcd_username, ETCD_PASSWORD: USER.etcd_password, NODENAME: 'auth-1' }, 'h');
  const allocated = await mesos.call('allocate', { hostname: 'h', uid: 'u1', num_ipv4: 1 });
  t.is(allocated.answer?.error, null, JSON.stringify(allocated.answer));
  t.is((await mesos.call('release', { uid: 'u1' })).answer?.error, null);

  for (const id of [a, b]) for (const r of await agent.destroy(id)) t.is(r.code, 0, r.stdout);
});

test.serial('etcd auth - no password, a wrong one, or a prefix outside the role: refused, naming etcd and what to check', async (t) => {
  const base = world.network('net', PREFIX, 'auth-1', { daemon_socket: '', etcd_prefix: PREFIX });
  for (const [what, network, message] of [
    ['no user', base, /refused access|user name is empty/],
    ['a wrong password', { ...base, ...USER, etcd_password: 'wrong' }, /etcd at http:\/\/10\.99\.0\.1:2379 refused access: .*etcd_username\/etcd_password/],
    ['a prefix outside the role', { ...base, ...USER, etcd_prefix: '/elsewhere' }, /refused access: .*permission denied/i],
  ] as const) {
    const run = (await agent.launch(randomUUID(), [{ network: network as never }])).runs[0]!;
    t.is(run.code, 1, what);
    t.is(run.json?.code, 7, `${what}: ${run.stdout}`);
    t.regex(String(run.json?.msg), message, what);
  }
  const env = { ETCD_ENDPOINTS: world.fabric.etcd.endpoint, ETCD_PREFIX: PREFIX };
  const refused = await runCalicoctl(['ipam', 'show'], { ...env, ETCD_USERNAME: USER.etcd_username, ETCD_PASSWORD: 'wrong' });
  t.is(refused.code, 1);
  t.regex(refused.stderr, /refused access/);
});
