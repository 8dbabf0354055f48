import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';
import { formatAddress } from '../../shared/net/address';
import { EtcdServer } from '../../sim/etcd';
import { IpamEnv } from '../helpers/ipam-env';
import { Netns } from '../../sim/netns';

let etcd: EtcdServer;
let env: IpamEnv;
const namespaces: Netns[] = [];

test.before(async () => {
  etcd = await EtcdServer.start();
  env = new IpamEnv(etcd, 'dataplane');
});
test.after.always(async () => {
  for (const ns of namespaces) await ns.destroy();
  env?.close();
  await etcd?.destroy();
});

async function netns(label: string): Promise<Netns> {
  const ns = await Netns.create(label);
  namespaces.push(ns);
  return ns;
}

interface CliAnswer<T> {
  ok: boolean;
  result: T;
  code?: string;
  message?: string;
}

/** Runs a dataplane operation inside the host namespace, as a plugin process on that host would. */
async function onHost<T = unknown>(host: Netns, request: object): Promise<CliAnswer<T>> {
  const { stdout } = await host.exec(process.execPath, ['--import', 'tsx', 'test/fixtures/dataplane-cli.ts'], { input: JSON.stringify(request) });
  return JSON.parse(stdout) as CliAnswer<T>;
}

test.serial('dataplane - two workloads on one host get IPAM addresses, are wired, ping each other, and leave nothing', async (t) => {
  const ipam = await env.ipam();
  await ipam.createPool('pool4', { cidr: '10.123.0.0/16' });
  await ipam.createPool('pool6', { cidr: 'fd00:123::/64' });
  const host = await netns('host');
  // Felix sets global IPv6 forwarding on a host; IPv4 forwarding is per interface and set by us.
  await host.exec('sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1']);
  const before = await host.snapshot();
  const workloads = [];
  for (const id of ['aaaaaaaaaaaaaaaa1111', 'bbbbbbbbbbbbbbbb2222']) {
    const container = await netns('ctr');
    const { ipv4, ipv6 } = await ipam.autoAssign({ handle: `net1.${id}`, node: 'host1', num4: 1, num6: 1 });
    const request = { netns: container.path, containerIf: 'eth0', hostIf: `cali${id.slice(0, 11)}`, ownerTag: `calico:test-${id}`, addresses: [...ipv4, ...ipv6].map(formatAddress), mtu: 1400 };
    const wired = await onHost<{ containerMac: string }>(host, { op: 'wire', ...request });
    t.true(wired.ok, wired.message);
    workloads.push({ container, request, ipv4: formatAddress(ipv4[0]!), ipv6: formatAddress(ipv6[0]!), mac: wired.result.containerMac });
  }
  const [a, b] = workloads as [typeof workloads[0], typeof workloads[0]];
  t.is(a.request.hostIf, 'caliaaaaaaaaaaa');

  // The kernel's view on both sides.
  const link = (await a.container.json<{ address: string; mtu: number }[]>('link', 'show', 'eth0'))[0]!;
  t.is(link.address, a.mac);
  t.is(link.mtu, 1400);
  const routes = await a.container.json<{ dst: string; gateway?: string }[]>('route', 'show');
  t.deepEqual(routes.map((r) => `${r.dst} ${r.gateway ?? ''}`.trim()).sort(), ['169.254.1.1', 'default 169.254.1.1']);
  const hostRoutes = await host.json<{ dst: string; dev: string }[]>('route', 'show');
  t.deepEqual(hostRoutes.map((r) => `${r.dst} ${r.dev}`).sort(), [`${a.ipv4} caliaaaaaaaaaaa`, `${b.ipv4} calibbbbbbbbbbb`].sort());
  const proxyArp = await host.exec('cat', ['/proc/sys/net/ipv4/conf/caliaaaaaaaaaaa/proxy_arp']);
  t.is(proxyArp.stdout.trim(), '1');
  const hostLink = (await host.json<{ address: string }[]>('link', 'show', 'caliaaaaaaaaaaa'))[0]!;
  t.is(hostLink.address, 'ee:ee:ee:ee:ee:ee');

  t.true(await a.container.ping(b.ipv4), 'IPv4 ping a -> b');
  t.true(await b.container.ping(a.ipv4), 'IPv4 ping b -> a');
  t.true(await a.container.ping(b.ipv6), 'IPv6 ping a -> b');

  // CHECK's view.
  const state = await onHost<{ host: { exists: boolean; up: boolean; routes: string[] }; container: { addresses: string[]; mac: string } }>(host, { op: 'inspect', ...a.request });
  t.true(state.result.host.exists && state.result.host.up);
  t.deepEqual(state.result.host.routes.sort(), [a.ipv4, a.ipv6].sort());
  t.deepEqual(state.result.container.addresses.sort(), [`${a.ipv4}/32`, `${a.ipv6}/128`].sort());
  t.is(state.result.container.mac, a.mac);

  for (const w of workloads) t.true((await onHost(host, { op: 'unwire', ...w.request })).ok);
  t.is(await host.snapshot(), before, 'the host namespace is as it was');
  t.is((await a.container.json<unknown[]>('link', 'show')).length, 1, 'only lo is left in the container');
  // Removal is idempotent, with or without the namespace.
  t.true((await onHost(host, { op: 'unwire', ...a.request })).ok);
  await a.container.destroy();
  t.true((await onHost(host, { op: 'unwire', ...a.request })).ok);
});

test.serial('dataplane - a stale host link of the same owner is replaced, another owner\'s is never touched; an existing container interface is refused and nothing leaks', async (t) => {
  const host = await netns('host');
  const container = await netns('ctr');
  await host.ip('link', 'add', 'calistale0000', 'type', 'veth', 'peer', 'name', 'stalepeer0');
  await host.ip('link', 'set', 'dev', 'calistale0000', 'alias', 'calico:me');
  await host.ip('link', 'add', 'calitaken0000', 'type', 'veth', 'peer', 'name', 'takenpeer0');
  await host.ip('link', 'set', 'dev', 'calitaken0000', 'alias', 'calico:someone-else');
  const request = { netns: container.path, containerIf: 'eth0', hostIf: 'calistale0000', ownerTag: 'calico:me', addresses: ['10.124.0.5'] };
  t.true((await onHost(host, { op: 'wire', ...request })).ok);
  const kinds = await host.json<{ ifname: string; ifalias?: string; linkinfo?: { info_kind: string } }[]>('-d', 'link', 'show', 'calistale0000');
  t.is(kinds[0]!.linkinfo?.info_kind, 'veth');
  t.is(kinds[0]!.ifalias, 'calico:me', 'the host end names its owner');

  const other = await netns('ctr');
  const owned = await onHost(host, { op: 'wire', ...request, netns: other.path, hostIf: 'calitaken0000' });
  t.false(owned.ok);
  t.is(owned.code, 'DATAPLANE_INTERFACE_OWNED');
  t.is((await host.json<{ ifalias?: string }[]>('link', 'show', 'calitaken0000'))[0]!.ifalias, 'calico:someone-else', 'another owner\'s link stays');
  t.deepEqual((await onHost(host, { op: 'unwire', containerIf: 'eth0', hostIf: 'calitaken0000', ownerTag: 'calico:me' })).result, 'not ours', 'and removal leaves it too');

  // Link-local addresses finish duplicate address detection first, and what the kernel learns of
  // the wired workload's own IPv6 link-local traffic (neighbour entries, at any moment) is not ours:
  // neither is what is compared.
  for (let i = 0; i < 100 && (await host.ip('-6', 'addr', 'show', 'tentative')).trim() !== ''; i++) await sleep(50);
  const ours = async () => (await host.snapshot()).split('\n').filter((line) => !/^fe80::\S+ dev \S+ lladdr \S+ (?!PERMANENT)/.test(line)).join('\n');
  const before = await ours();
  const clash = await onHost(host, { op: 'wire', ...request, hostIf: 'caliother00000', ownerTag: 'calico:other' });
  t.false(clash.ok);
  t.is(clash.code, 'DATAPLANE_INTERFACE_EXISTS');
  t.is(await ours(), before, 'the failed wiring left nothing on the host');
});

test.serial('dataplane - bad names and missing namespaces are refused before any command runs', async (t) => {
  const host = await netns('host');
  const ownerTag = 'calico:t';
  const cases: [object, RegExp][] = [
    [{ netns: '/run/netns/none-such', containerIf: 'eth0', hostIf: 'cali1', ownerTag, addresses: ['10.1.1.1'] }, /network namespace "\/run\/netns\/none-such" does not exist/],
    [{ netns: 'relative', containerIf: 'eth0', hostIf: 'cali1', ownerTag, addresses: ['10.1.1.1'] }, /invalid netns/],
    [{ netns: '/x', containerIf: 'eth0\nlink del lo', hostIf: 'cali1', ownerTag, addresses: ['10.1.1.1'] }, /invalid container interface/],
    [{ netns: '/x', containerIf: 'help', hostIf: 'cali1', ownerTag, addresses: ['10.1.1.1'] }, /keyword of the ip command/],
    [{ netns: '/x', containerIf: '-x', hostIf: 'cali1', ownerTag, addresses: ['10.1.1.1'] }, /must not start with "-"/],
    [{ netns: '/x', containerIf: 'eth0', hostIf: 'cali-is-far-too-long', ownerTag, addresses: ['10.1.1.1'] }, /longer than 15/],
    [{ netns: '/x', containerIf: 'eth0', hostIf: 'cali1', ownerTag: 'calico: x', addresses: ['10.1.1.1'] }, /invalid owner tag/],
    [{ netns: '/x', containerIf: 'eth0', hostIf: 'cali1', ownerTag, addresses: [] }, /at least one address/],
    [{ netns: '/x', containerIf: 'eth0', hostIf: 'cali1', ownerTag, addresses: ['10.1.1.1'], mtu: 70000 }, /invalid mtu/],
  ];
  const before = await host.snapshot();
  for (const [request, message] of cases) {
    const answer = await onHost(host, { op: 'wire', ...request });
    t.false(answer.ok);
    t.regex(answer.message!, message);
  }
  t.is(await host.snapshot(), before);
});
