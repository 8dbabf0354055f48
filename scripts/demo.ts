/**
 * The demo's main job, run inside a simulated host's network namespace with an etcd reachable
 * there: two containers get addresses from the IPAM, are wired by the dataplane, recorded as
 * workload endpoints of one network, ping each other, and are removed again.
 * Usage: calico-demo NETNS_PATH NETNS_PATH  (ETCD_ENDPOINTS says where etcd is)
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Datastore, etcdSettingsFrom } from '../shared/datastore';
import { hostVethName } from '../shared/dataplane/names';
import { unwireWorkload, wireWorkload } from '../shared/dataplane/workload';
import { ensureNetworkProfile } from '../shared/endpoints/profile';
import { buildWorkloadEndpoint } from '../shared/endpoints/workload-endpoint';
import { messageOf } from '../shared/errors';
import { Ipam } from '../shared/ipam/ipam';
import { formatAddress, type IpAddress } from '../shared/net/address';
import { formatCidr } from '../shared/net/cidr';

const NETWORK = 'demo-net';
const NODE = 'demo-host';

interface Workload {
  readonly id: string;
  readonly netns: string;
  readonly hostIf: string;
  addresses: IpAddress[];
  mac?: string;
}

async function main(netnsPaths: string[]): Promise<void> {
  if (netnsPaths.length < 2) throw new Error('usage: calico-demo NETNS_PATH NETNS_PATH...');
  const ds = await Datastore.connect(etcdSettingsFrom({}, process.env));
  const ipam = new Ipam(ds);
  const workloads: Workload[] = netnsPaths.map((netns, i) => {
    const id = `demo${i + 1}${Math.random().toString(16).slice(2, 10)}`;
    return { id, netns, hostIf: hostVethName(id), addresses: [] };
  });
  try {
    if ((await ipam.pools()).length === 0) {
      await ipam.createPool('default-ipv4-ippool', { cidr: '10.96.0.0/16' });
      await ipam.createPool('default-ipv6-ippool', { cidr: 'fd00:96::/64' });
    }
    await ensureNetworkProfile(ds, NETWORK);
    for (const w of workloads) {
      const { ipv4, ipv6 } = await ipam.autoAssign({ handle: `${NETWORK}.${w.id}`, node: NODE, num4: 1, num6: 1, attributes: { container: w.id } });
      w.addresses = [...ipv4, ...ipv6];
      const wired = await wireWorkload({ netns: w.netns, containerIf: 'eth0', hostIf: w.hostIf, addresses: w.addresses });
      w.mac = wired.containerMac;
      await ds.resources.create(buildWorkloadEndpoint(
        { node: NODE, orchestrator: 'cni', workload: w.id, endpoint: 'eth0', namespace: 'default' },
        { containerID: w.id, addresses: w.addresses, profiles: [NETWORK], interfaceName: w.hostIf, mac: w.mac },
      ));
    }

    console.log(`\nWorkloads on network "${NETWORK}" (host ${NODE}):`);
    printTable(['container', 'host veth', 'IPv4', 'IPv6', 'MAC'], workloads.map((w) => [w.id, w.hostIf, ...w.addresses.map(formatAddress), w.mac ?? '']));

    console.log('\nPing matrix (row pings column):');
    const targets = workloads.flatMap((w) => w.addresses.map((a) => ({ name: `${w.id.slice(0, 5)} ${formatAddress(a)}`, address: formatAddress(a) })));
    const rows: string[][] = [];
    let failures = 0;
    for (const from of workloads) {
      const cells = await Promise.all(targets.map((to) => ping(from.netns, to.address)));
      failures += cells.filter((ok) => !ok).length;
      rows.push([from.id.slice(0, 5), ...cells.map((ok) => (ok ? 'ok' : 'FAIL'))]);
    }
    printTable(['from \\ to', ...targets.map((t) => t.name)], rows);

    console.log('\nIPAM blocks:');
    printTable(['block', 'affinity', 'in use', 'size'], (await ipam.listBlocks()).map((b) => [formatCidr(b.cidr), b.affinity ?? '', String(b.inUse), String(b.size)]));
    if (failures > 0) process.exitCode = 1;
  } finally {
    for (const w of workloads) {
      await unwireWorkload({ netns: w.netns, containerIf: 'eth0', hostIf: w.hostIf }).catch(() => undefined);
      await ipam.releaseByHandle(`${NETWORK}.${w.id}`).catch(() => undefined);
      await ds.resources.delete('WorkloadEndpoint', `${NODE}-cni-${w.id}-eth0`, 'default').catch(() => undefined);
    }
    await ipam.releaseEmptyBlockAffinities(NODE).catch(() => undefined);
    console.log('\nCleaned up: veths, addresses, endpoint records and empty blocks removed.');
    ds.close();
  }
}

async function ping(netns: string, address: string): Promise<boolean> {
  try {
    await promisify(execFile)('nsenter', [`--net=${netns}`, 'ping', '-c', '1', '-W', '2', address]);
    return true;
  } catch {
    return false;
  }
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => '  ' + cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(line(header));
  for (const row of rows) console.log(line(row));
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(`calico-demo: ${messageOf(err)}`);
  process.exitCode = 1;
});
