import test from 'ava';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { HOST_PATH, runPlugin } from '../../sim/cni-exec';
import { assertNothingLeft, useCniWorld } from '../helpers/cni-world';
import { readIpamState } from '../helpers/ipam-state';
import { hostVethName } from '../../shared/endpoints/identity';

const setup = useCniWorld(test);

const NODE = 'agent1';

/** The host veth of a container's eth0 on network `net`. */
const vethOf = (containerId: string) => hostVethName({ orchestrator: 'cni', node: NODE, network: 'net', containerId, ifname: 'eth0' });

/** A CNI runtime's call (libcni-style: CNI_ARGS allowed, any version). */
function call(command: string, id: string, conf: object, extraEnv: Record<string, string> = {}, plugin = 'calico') {
  const env = {
    CNI_COMMAND: command,
    CNI_CONTAINERID: id,
    CNI_IFNAME: 'eth0',
    CNI_NETNS: setup.agent.netnsPath(id),
    CNI_PATH: setup.world.pluginsDir,
    PATH: HOST_PATH,
    ...extraEnv,
  };
  return runPlugin(setup.agent.host, join(setup.world.pluginsDir, plugin), env, JSON.stringify(conf));
}

for (const version of ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
  test.serial(`cni spec - ADD and DEL answer in CNI ${version}`, async (t) => {
    const { prefix, ds } = await setup.world.scenario(`v${version.replace(/\./g, '')}`);
    const id = randomUUID();
    await setup.agent.createContainer(id);
    const conf = { ...setup.world.network('spec-net', prefix, NODE, { ipam: { type: 'calico-ipam', assign_ipv6: 'true' } }), cniVersion: version };
    const add = await call('ADD', id, conf);
    t.is(add.code, 0, add.stdout + add.stderr);
    const r = add.json!;
    t.is(r.cniVersion, version);
    if (version === '0.1.0' || version === '0.2.0') {
      t.regex(r.ip4.ip, /^10\.200\.\d+\.\d+\/32$/);
      t.regex(r.ip6.ip, /^fd00:200::.*\/128$/);
      t.is(r.interfaces, undefined);
    } else {
      t.deepEqual(r.interfaces.map((i: { name: string; sandbox: string }) => [i.name, i.sandbox]), [['eth0', setup.agent.netnsPath(id)]]);
      t.regex(r.interfaces[0].mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
      t.is(r.ips.length, 2);
      t.is(r.ips[0].interface, 0);
      const hasVersion = version.startsWith('0.');
      t.is('version' in r.ips[0], hasVersion, `ips[].version ${hasVersion ? 'present' : 'absent'} in ${version}`);
      if (hasVersion) t.deepEqual(r.ips.map((i: { version: string }) => i.version), ['4', '6']);
      t.is('mtu' in r.interfaces[0], version === '1.1.0');
    }
    const del = await call('DEL', id, { ...conf, ...(version >= '0.4.0' ? { prevResult: r } : {}) });
    t.is(del.code, 0, del.stdout);
    t.is(del.stdout, '');
    await setup.agent.destroy(id).catch(() => undefined);
    await assertNothingLeft(t, ds, [setup.agent]);
  });
}

test.serial('cni spec - a repeat ADD returns the same result and allocates nothing', async (t) => {
  const { prefix, ds } = await setup.world.scenario('repeat');
  const id = randomUUID();
  await setup.agent.createContainer(id);
  const conf = { ...setup.world.network('net', prefix, NODE), cniVersion: '1.0.0' };
  const first = await call('ADD', id, conf);
  const again = await call('ADD', id, conf);
  t.is(again.code, 0, again.stdout);
  t.deepEqual(again.json, first.json);
  t.is((await ds.resources.list('WorkloadEndpoint')).length, 1);
  const state = await readIpamState(ds);
  t.is(state.allocated.size, 1, 'one address, not two');
  t.is((await call('DEL', id, conf)).code, 0);
  t.is((await call('DEL', id, conf)).code, 0, 'DEL is idempotent');
  await setup.agent.destroy(id).catch(() => undefined);
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('cni spec - CHECK passes on a good attachment and fails once its veth is gone', async (t) => {
  const { prefix, ds } = await setup.world.scenario('check');
  const id = randomUUID();
  await setup.agent.createContainer(id);
  const conf = { ...setup.world.network('net', prefix, NODE), cniVersion: '1.0.0' };
  const add = await call('ADD', id, conf);
  const check = await call('CHECK', id, { ...conf, prevResult: add.json });
  t.is(check.code, 0, check.stdout);
  const old = await call('CHECK', id, { ...conf, cniVersion: '0.3.1', prevResult: add.json });
  t.is(old.json!.code, 1, 'CHECK before 0.4.0 is an incompatible version');
  const noPrev = await call('CHECK', id, conf);
  t.is(noPrev.json!.code, 7);
  await setup.agent.host.ip('link', 'del', vethOf(id));
  const broken = await call('CHECK', id, { ...conf, prevResult: add.json });
  t.is(broken.code, 1);
  t.regex(broken.json!.msg, /CHECK failed/);
  t.is((await call('DEL', id, conf)).code, 0);
  await setup.agent.destroy(id).catch(() => undefined);
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('cni spec - GC removes what the runtime no longer knows, only on this host; STATUS and VERSION', async (t) => {
  const { prefix, ds } = await setup.world.scenario('gc');
  const conf = { ...setup.world.network('net', prefix, NODE), cniVersion: '1.1.0' };
  const [keep, stale] = [randomUUID(), randomUUID()];
  for (const id of [keep, stale]) {
    await setup.agent.createContainer(id);
    t.is((await call('ADD', id, conf)).code, 0);
  }
  // Another host's allocation on the same network must survive this host's GC.
  const otherHost = await call('ADD', randomUUID(), { ...conf, nodename: 'elsewhere' }, { CNI_NETNS: setup.agent.netnsPath(keep), CNI_IFNAME: 'eth5' });
  t.is(otherHost.code, 0, otherHost.stdout);
  const gc = await runPlugin(setup.agent.host, join(setup.world.pluginsDir, 'calico'), { CNI_COMMAND: 'GC', CNI_PATH: setup.world.pluginsDir, PATH: HOST_PATH },
    JSON.stringify({ ...conf, 'cni.dev/valid-attachments': [{ containerID: keep, ifname: 'eth0' }] }));
  t.is(gc.code, 0, gc.stdout + gc.stderr);
  const endpoints = await ds.resources.list('WorkloadEndpoint');
  t.deepEqual(endpoints.map((e) => e.spec.containerID).sort(), [keep, endpoints.find((e) => e.spec.node === 'elsewhere')!.spec.containerID].sort());
  const links = await setup.agent.host.json<{ ifname: string }[]>('link', 'show');
  t.false(links.some((l) => l.ifname === vethOf(stale)), 'the stale veth is gone');
  t.true(links.some((l) => l.ifname === vethOf(keep)), 'the live veth stays');

  const status = await runPlugin(setup.agent.host, join(setup.world.pluginsDir, 'calico'), { CNI_COMMAND: 'STATUS', PATH: HOST_PATH }, JSON.stringify(conf));
  t.is(status.code, 0, status.stdout);
  const down = await runPlugin(setup.agent.host, join(setup.world.pluginsDir, 'calico'), { CNI_COMMAND: 'STATUS', PATH: HOST_PATH },
    JSON.stringify({ ...conf, etcd_endpoints: 'http://10.99.0.1:1', etcd_timeout_ms: 1000 }));
  t.is(down.json!.code, 50);
  t.regex(down.json!.msg, /10\.99\.0\.1:1/);
  const version = await runPlugin(setup.agent.host, join(setup.world.pluginsDir, 'calico'), { CNI_COMMAND: 'VERSION', PATH: HOST_PATH }, '{"cniVersion":"0.4.0"}');
  t.deepEqual(version.json, { cniVersion: '0.4.0', supportedVersions: ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });

  for (const e of endpoints) {
    await call('DEL', e.spec.containerID!, { ...conf, nodename: e.spec.node }, { CNI_IFNAME: e.spec.endpoint });
  }
  await setup.agent.destroy(keep).catch(() => undefined);
  await setup.agent.destroy(stale).catch(() => undefined);
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('cni spec - Debian\'s host-local works as the IPAM delegate', async (t) => {
  const { prefix, ds } = await setup.world.scenario('host-local');
  const id = randomUUID();
  await setup.agent.createContainer(id);
  const dataDir = `/tmp/host-local-${id}`;
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const conf = { ...setup.world.network('hl-net', prefix, NODE), cniVersion: '0.3.1', ipam: { type: 'host-local', subnet: '10.201.0.0/24', dataDir } };
  const add = await call('ADD', id, conf);
  t.is(add.code, 0, add.stdout + add.stderr);
  t.regex(add.json!.ips[0].address, /^10\.201\.0\.\d+\/32$/);
  const peer = randomUUID();
  await setup.agent.createContainer(peer);
  const second = await call('ADD', peer, conf);
  t.true(await setup.agent.container(id).ping(second.json!.ips[0].address.split('/')[0]), 'delegated addresses route like ours');
  for (const x of [id, peer]) t.is((await call('DEL', x, conf)).code, 0);
  const missing = await call('ADD', randomUUID(), { ...conf, ipam: { type: 'no-such-ipam' } });
  t.is(missing.json!.code, 7);
  t.regex(missing.json!.msg, /IPAM plugin "no-such-ipam" \(ipam\.type\) was not found in CNI_PATH/);
  for (const x of [id, peer]) await setup.agent.destroy(x).catch(() => undefined);
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('cni spec - three ADDs of one container at once take turns: one wiring, one address, the same answer to each', async (t) => {
  const { prefix, ds } = await setup.world.scenario('double-add');
  const id = randomUUID();
  await setup.agent.createContainer(id);
  const conf = { ...setup.world.network('net', prefix, NODE, { daemon_socket: '' }), cniVersion: '1.0.0' };
  const runs = await Promise.all([call('ADD', id, conf), call('ADD', id, conf), call('ADD', id, conf)]);
  const ok = runs.filter((r) => r.code === 0);
  t.is(ok.length, 3, runs.map((r) => r.stdout).join('\n'));
  t.true(ok.every((r) => JSON.stringify(r.json) === JSON.stringify(ok[0]!.json)), runs.map((r) => r.stdout).join('\n'));
  const address = ok[0]!.json!.ips[0].address.split('/')[0];
  const state = await readIpamState(ds);
  t.deepEqual([...state.allocated.entries()], [[address, `cni:${NODE}:net:${id}:eth0`]], 'the winner\'s address, and only it, stays allocated');
  const [endpoint] = await ds.resources.list('WorkloadEndpoint');
  t.deepEqual(endpoint!.spec.ipNetworks, [`${address}/32`]);
  t.is((await call('DEL', id, conf)).code, 0);
  await setup.agent.destroy(id).catch(() => undefined);
  await assertNothingLeft(t, ds, [setup.agent]);
});
