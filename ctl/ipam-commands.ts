/** `calicoctl ipam show | configure | check | release`. */
import { readFileSync, writeFileSync } from 'node:fs';
import { MalformedDataError, decodeBlock, decodeEach, decodeHandle, decodeResource, type Datastore, type Entry } from '../shared/datastore';
import type { Read } from '../shared/datastore/kv';
import { hostEndpointRanges, nodeOfEndpointName } from '../shared/endpoints/identity';
import { decodeEndpointAddresses } from '../shared/datastore/resources';
import type { Ipam } from '../shared/ipam/ipam';
import { poolHolds, type Pool } from '../shared/ipam/pool';
import { cidrSize, formatAddress, formatCidr, parseAddress, parseCidr, type Cidr, type IpAddress } from '../shared/net';
import { messageOf } from '../shared/errors';
import { IpamChecker, type CheckReport, type EndpointAddresses } from './ipam-check';
import { CtlError } from './errors';
import { table } from './output';

/** A share as a whole percent; sizes are exact integers (an IPv6 pool holds 2^64 addresses and more). */
const percent = (part: number | bigint, whole: number | bigint) => {
  const [p, w] = [BigInt(part), BigInt(whole)];
  return w === 0n ? '0%' : `${(p * 200n + w) / (2n * w)}%`;
};

export async function ipamShow(ipam: Ipam, options: { showBlocks: boolean; ip?: string }): Promise<string> {
  if (options.ip) {
    let address;
    try {
      address = parseAddress(options.ip, '--ip');
    } catch (err) {
      throw new CtlError(messageOf(err));
    }
    const owner = await ipam.ownerOf(address);
    if (!owner) return `IP ${formatAddress(address)} is not assigned`;
    const attributes = Object.entries(owner.attributes).map(([k, v]) => `  ${k}: ${v}`).join('\n');
    return `IP ${formatAddress(address)} is in use (block ${formatCidr(owner.block)})\nHandle: ${owner.handle ?? '(none)'}\nAttributes:\n${attributes}`;
  }
  // Blocks are read a page at a time and summed per pool; only rows asked for are kept.
  const pools = await ipam.pools();
  const used = new Map<Pool, number>();
  const blockRows = new Map<Pool, string[][]>();
  for await (const page of ipam.blockPages()) {
    for (const block of page) {
      const pool = pools.find((p) => poolHolds(p, block.cidr));
      if (!pool) continue;
      used.set(pool, (used.get(pool) ?? 0) + block.inUse);
      if (!options.showBlocks) continue;
      const rows = blockRows.get(pool) ?? [];
      rows.push(['Block', formatCidr(block.cidr), String(block.size), `${block.inUse} (${percent(block.inUse, block.size)})`, `${block.size - block.inUse} (${percent(block.size - block.inUse, block.size)})`, block.affinity ?? '']);
      blockRows.set(pool, rows);
    }
  }
  const rows: string[][] = [];
  for (const pool of pools) {
    const size = cidrSize(pool.cidr);
    const inUse = BigInt(used.get(pool) ?? 0);
    rows.push(['IP Pool', formatCidr(pool.cidr), String(size), `${inUse} (${percent(inUse, size)})`, `${size - inUse} (${percent(size - inUse, size)})`, pool.disabled ? 'disabled' : '']);
    rows.push(...(blockRows.get(pool) ?? []));
  }
  return table(['GROUPING', 'CIDR', 'IPS TOTAL', 'IPS IN USE', 'IPS FREE', options.showBlocks ? 'AFFINITY' : ''], rows);
}

export async function ipamConfigure(ipam: Ipam, options: { strictAffinity?: string; maxBlocksPerHost?: string }): Promise<string> {
  if (options.strictAffinity === undefined && options.maxBlocksPerHost === undefined) {
    throw new CtlError('ipam configure needs --strict-affinity=true|false and/or --max-blocks-per-host=N');
  }
  const config = { ...(await ipam.config()) };
  if (options.strictAffinity !== undefined) {
    if (options.strictAffinity !== 'true' && options.strictAffinity !== 'false') throw new CtlError('--strict-affinity must be true or false');
    config.strict_affinity = options.strictAffinity === 'true';
  }
  if (options.maxBlocksPerHost !== undefined) {
    const n = Number(options.maxBlocksPerHost);
    if (!Number.isInteger(n) || n < 0) throw new CtlError('--max-blocks-per-host must be a whole number (0: no limit)');
    config.maxBlocksPerHost = n;
  }
  await ipam.setConfig(config);
  return `IPAM configuration: strict affinity ${config.strict_affinity}, max blocks per host ${config.maxBlocksPerHost || 'unlimited'}`;
}

/** Hosts whose records one read carries: their blocks and three endpoint ranges each, within etcd's 128 operations. */
const READ_BUDGET = 100;

/**
 * A streaming pass: host by host in the order of the affinity keys, each host's blocks and
 * endpoints read together (several hosts per transaction), then the blocks no host claims, the
 * hosts that hold endpoints but no block, what crosses hosts, and the handles. Memory holds one
 * batch of hosts, the names of checked blocks and hosts, and one count per handle.
 */
export async function ipamCheck(ds: Datastore, ipam: Ipam, graceSeconds: number, progress: (line: string) => void): Promise<CheckReport> {
  const pools = await ipam.pools();
  const checker = new IpamChecker(pools.map((p) => p.cidr), new Date(), graceSeconds);
  const hosts = new Set<string>();

  progress('checking blocks and endpoints host by host...');
  let batch: { host: string; cidrs: Cidr[] }[] = [];
  const flush = async () => {
    await checkHosts(ds, checker, batch);
    batch = [];
  };
  for await (const page of ds.kv.pages(ds.keys.affinitiesPrefix(), { keysOnly: true, pageSize: 1000 })) {
    for (const entry of page) {
      const named = ds.keys.affinityOf(entry.key);
      if (!named) continue;
      const last = batch[batch.length - 1];
      if (last?.host === named.host) {
        last.cidrs.push(named.cidr);
        continue;
      }
      if (batch.reduce((n, h) => n + h.cidrs.length + 3, 0) > READ_BUDGET) await flush();
      hosts.add(named.host);
      batch.push({ host: named.host, cidrs: [named.cidr] });
    }
  }
  await flush();

  progress('checking blocks no host claims...');
  let unclaimed: Cidr[] = [];
  const checkUnclaimed = async () => {
    const read = await ds.kv.readMany(unclaimed.map((c) => ({ key: ds.keys.block(c) })));
    const entries = read.flatMap(([entry]) => (entry ? [entry] : []));
    for (const block of decodeEach(entries, (entry) => decodeBlock(entry.key, entry.value), unreadableBlock(ds, checker))) checker.checkUnclaimedBlock(block);
    unclaimed = [];
  };
  for (const version of [4, 6] as const) {
    for await (const page of ds.kv.pages(ds.keys.blockPrefix(version), { keysOnly: true, pageSize: 1000 })) {
      for (const entry of page) {
        const cidr = ds.keys.blockCidrOf(entry.key);
        if (!cidr || checker.hasChecked(formatCidr(cidr))) continue;
        unclaimed.push(cidr);
        if (unclaimed.length >= READ_BUDGET) await checkUnclaimed();
      }
    }
  }
  await checkUnclaimed();

  progress('checking endpoints of hosts without blocks...');
  for (const host of await endpointNodes(ds)) {
    if (hosts.has(host)) continue;
    const held = await hostEndpoints(ds, checker, host);
    checker.checkHost(host, [], held.endpoints, held.tunnels);
  }
  for (const owner of checker.ownersToSettle()) {
    const held = await hostEndpoints(ds, checker, owner);
    checker.settleBorrowed(owner, held.endpoints, held.tunnels);
  }
  const elsewhere = checker.addressesToSettle();
  if (elsewhere.length > 0) checker.settleElsewhere(new Set(await allocatedOf(ipam, elsewhere)));

  progress('checking handles...');
  const handleBase = ds.keys.handlePrefix();
  for await (const page of ds.kv.pages(handleBase, { pageSize: 1000 })) {
    const handles = decodeEach(page, (entry) => ({ id: entry.key.slice(handleBase.length), record: decodeHandle(entry.key, entry.value) }), (err) => checker.malformed(err.key, err.message));
    for (const { id, record } of handles) checker.checkHandle(id, record);
  }
  return checker.finish();
}

/** Several hosts' blocks and endpoints in as few transactions as etcd allows. */
async function checkHosts(ds: Datastore, checker: IpamChecker, hosts: readonly { host: string; cidrs: Cidr[] }[]): Promise<void> {
  const planned = hosts.map((h) => ({ ...h, holdings: hostReads(ds, h.host) }));
  const results = await ds.kv.readMany(planned.flatMap(({ cidrs, holdings }) => [...cidrs.map((c) => ({ key: ds.keys.block(c) })), ...holdings]));
  let at = 0;
  for (const { host, cidrs, holdings } of planned) {
    const entries = results.slice(at, at + cidrs.length).flatMap(([e]) => (e ? [e] : []));
    const blocks = decodeEach(entries, (e) => decodeBlock(e.key, e.value), unreadableBlock(ds, checker));
    at += cidrs.length;
    const held = hostHoldings(checker, host, results.slice(at, at + holdings.length));
    at += holdings.length;
    checker.checkHost(host, blocks, held.endpoints, held.tunnels);
  }
}

/** What a host holds addresses with: its endpoint records (by their key ranges), and its Node (tunnel ends). */
function hostReads(ds: Datastore, host: string): Read[] {
  return [
    ...hostEndpointRanges(host).map((r) => ({ prefix: `${ds.keys.resourcePrefix('WorkloadEndpoint', r.namespace)}${r.namePrefix}` })),
    { key: ds.keys.resource('Node', host) },
  ];
}

/** A block that cannot be read, for the checker: its allocations are unknown. */
function unreadableBlock(ds: Datastore, checker: IpamChecker): (err: MalformedDataError) => void {
  return (err) => {
    const cidr = ds.keys.blockCidrOf(err.key);
    checker.malformed(err.key, err.message, cidr ? { block: formatCidr(cidr) } : {});
  };
}

function hostHoldings(checker: IpamChecker, host: string, results: readonly Entry[][]): { endpoints: EndpointAddresses[]; tunnels: string[] } {
  // An endpoint that cannot be read may hold any of the host's addresses: the host's are then not judged.
  const endpoints = decodeEach(results.slice(0, -1).flat(), endpointAddresses, (err) => checker.malformed(err.key, err.message, { host })).filter((e) => e.node === host);
  const [node] = results[results.length - 1] ?? [];
  return { endpoints, tunnels: node ? tunnelAddressesOf(node) : [] };
}

/** A Node's VXLAN and IPIP tunnel addresses (allocated to it, used by no endpoint). */
function tunnelAddressesOf(entry: Entry): string[] {
  try {
    const spec = decodeResource('Node', entry).spec;
    return [spec.ipv4VXLANTunnelAddr, spec.bgp?.ipv4IPIPTunnelAddr].filter((a): a is string => typeof a === 'string').map((a) => formatAddress(parseAddress(a)));
  } catch {
    return [];
  }
}

/** The nodes that hold endpoint records, from the records' keys alone. */
async function endpointNodes(ds: Datastore): Promise<Set<string>> {
  const nodes = new Set<string>();
  for await (const page of ds.kv.pages(ds.keys.resourcePrefix('WorkloadEndpoint'), { keysOnly: true, pageSize: 1000 })) {
    for (const entry of page) {
      const node = nodeOfEndpointName(entry.key.slice(entry.key.lastIndexOf('/') + 1));
      if (node !== undefined) nodes.add(node);
    }
  }
  return nodes;
}

async function hostEndpoints(ds: Datastore, checker: IpamChecker, host: string): Promise<{ endpoints: EndpointAddresses[]; tunnels: string[] }> {
  return hostHoldings(checker, host, await ds.kv.readMany(hostReads(ds, host)));
}

function endpointAddresses(entry: Entry): EndpointAddresses & { node: string } {
  const wep = decodeEndpointAddresses(entry);
  for (const [i, network] of wep.ipNetworks.entries()) {
    try {
      parseAddress(network.split('/')[0]!, `spec.ipNetworks[${i}]`);
    } catch (err) {
      throw new MalformedDataError(entry.key, messageOf(err));
    }
  }
  return { name: `${wep.namespace}/${wep.name}`, addresses: wep.ipNetworks, node: wep.node };
}

/** Which of the addresses are allocated; one whose block cannot be read counts as allocated (it cannot be judged). */
async function allocatedOf(ipam: Ipam, addresses: readonly IpAddress[]): Promise<string[]> {
  const allocated: string[] = [];
  for (const address of addresses) {
    const owner = await ipam.ownerOf(address).catch((err: unknown) => {
      if (err instanceof MalformedDataError) return true;
      throw err;
    });
    if (owner) allocated.push(formatAddress(address));
  }
  return allocated;
}

export function describeReport(report: CheckReport): string {
  const lines = [`Checked ${report.summary.blocks} blocks with ${report.summary.allocated} allocated addresses, ${report.summary.handles} handles, ${report.summary.endpoints} endpoints.`];
  const section = (title: string, items: string[]) => {
    if (items.length === 0) return;
    lines.push(`${title} (${items.length}):`, ...items.slice(0, 50).map((i) => `  ${i}`));
    if (items.length > 50) lines.push(`  ... and ${items.length - 50} more (see the report file)`);
  };
  section('Addresses allocated with no endpoint', report.allocatedWithoutEndpoint.map((l) => `${l.address} handle=${l.handle ?? '-'}${l.node ? ` node=${l.node}` : ''}`));
  section('Endpoint addresses that are not allocated', report.endpointAddressesNotAllocated.map((e) => `${e.address} of ${e.endpoint}`));
  section('Handles holding no address', report.handlesWithoutAddresses);
  section('Addresses outside every pool', report.addressesOutsidePools.map((a) => `${a.address} in block ${a.block}`));
  section('Blocks whose affinity and host disagree', report.affinityMismatches.map((m) => `${m.block} (${m.affinity}): ${m.problem}`));
  section('Records that cannot be read (skipped; what they hold is not judged)', report.malformedRecords.map((m) => `${m.key}: ${m.error}`));
  lines.push(report.summary.problems === 0 ? 'No problems found.' : `${report.summary.problems} problem(s) found.`);
  return lines.join('\n');
}

export function writeReport(path: string, report: CheckReport): void {
  writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
}

/** Releases the leaked addresses a report lists, refusing everything if any of them changed since. */
export async function ipamReleaseFromReport(ds: Datastore, ipam: Ipam, path: string): Promise<string> {
  let report: CheckReport;
  try {
    report = JSON.parse(readFileSync(path, 'utf8')) as CheckReport;
  } catch (err) {
    throw new CtlError(`cannot read the report ${path}: ${messageOf(err)}`);
  }
  if (!Array.isArray(report.allocatedWithoutEndpoint)) throw new CtlError(`${path} is not an ipam check report`);
  const current = await ipamCheck(ds, ipam, 0, () => undefined);
  const stillLeaked = new Map(current.allocatedWithoutEndpoint.map((l) => [l.address, l]));
  const changed: string[] = [];
  for (const leak of report.allocatedWithoutEndpoint) {
    const now = stillLeaked.get(leak.address);
    if (!now) changed.push(`${leak.address} is no longer a leak (released, or its endpoint exists now)`);
    else if (now.handle !== leak.handle || now.timestamp !== leak.timestamp) changed.push(`${leak.address} was allocated again since the report`);
  }
  if (changed.length > 0) throw new CtlError(`the data changed since ${path} was made; nothing was released. Run ipam check again.\n  ${changed.slice(0, 20).join('\n  ')}`);
  const addresses = report.allocatedWithoutEndpoint.map((l) => parseAddress(l.address));
  // Exactly the allocations the report names: the same handle, allocated at the same moment.
  const reported = new Set(report.allocatedWithoutEndpoint.map((l) => `${l.handle}|${l.timestamp}`));
  const { released } = await ipam.release(addresses, (a) => reported.has(`${a.handle_id}|${a.secondary?.timestamp}`));
  return `Released ${released.length} leaked address(es).`;
}

export function parsePoolCidr(text: string) {
  try {
    return parseCidr(text, 'pool CIDR');
  } catch (err) {
    throw new CtlError(messageOf(err));
  }
}
