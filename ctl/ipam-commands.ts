/** `calicoctl ipam show | configure | check | release`. */
import { readFileSync, writeFileSync } from 'node:fs';
import { decodeBlock, decodeHandle, type Datastore, type HandleRecord } from '../shared/datastore';
import { decodeResource } from '../shared/datastore/resources';
import type { Ipam } from '../shared/ipam/ipam';
import { poolHolds } from '../shared/ipam/pool';
import { cidrSize, formatAddress, formatCidr, parseAddress, parseCidr } from '../shared/net';
import { messageOf } from '../shared/errors';
import { checkIpam, type CheckReport } from './ipam-check';
import { CtlError } from './errors';
import { table } from './output';

const percent = (part: number, whole: number) => (whole === 0 ? '0%' : `${Math.round((part * 100) / whole)}%`);

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
  const [pools, blocks] = await Promise.all([ipam.pools(), ipam.listBlocks()]);
  const rows: string[][] = [];
  for (const pool of pools) {
    const size = Number(cidrSize(pool.cidr));
    const inPool = blocks.filter((b) => poolHolds(pool, b.cidr));
    const used = inPool.reduce((n, b) => n + b.inUse, 0);
    rows.push(['IP Pool', formatCidr(pool.cidr), String(size), `${used} (${percent(used, size)})`, `${size - used} (${percent(size - used, size)})`, pool.disabled ? 'disabled' : '']);
    if (!options.showBlocks) continue;
    for (const block of inPool) {
      rows.push(['Block', formatCidr(block.cidr), String(block.size), `${block.inUse} (${percent(block.inUse, block.size)})`, `${block.size - block.inUse} (${percent(block.size - block.inUse, block.size)})`, block.affinity ?? '']);
    }
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

/** Reads everything the check needs in one etcd transaction, so it sees one moment. */
export async function ipamCheck(ds: Datastore, ipam: Ipam, graceSeconds: number, progress: (line: string) => void): Promise<CheckReport> {
  progress('reading blocks, handles, endpoints, pools and affinities...');
  const [blocks4, blocks6, handleEntries, endpointEntries, affinityEntries] = await ds.kv.readMany([
    { prefix: ds.keys.blockPrefix(4) },
    { prefix: ds.keys.blockPrefix(6) },
    { prefix: ds.keys.handlePrefix() },
    { prefix: ds.keys.resourcePrefix('WorkloadEndpoint') },
    { prefix: ds.keys.affinitiesPrefix() },
  ]);
  const pools = await ipam.pools();
  progress(`checking ${blocks4!.length + blocks6!.length} blocks, ${handleEntries!.length} handles, ${endpointEntries!.length} endpoints...`);
  const handles = new Map<string, HandleRecord>();
  for (const e of handleEntries!) handles.set(e.key.slice(ds.keys.handlePrefix().length), decodeHandle(e.key, e.value));
  const endpoints = new Map<string, string[]>();
  for (const e of endpointEntries!) {
    const wep = decodeResource('WorkloadEndpoint', e);
    endpoints.set(`${wep.metadata.namespace ?? 'default'}/${wep.metadata.name}`, wep.spec.ipNetworks ?? []);
  }
  const affinities = new Set<string>();
  for (const e of affinityEntries!) {
    const named = ds.keys.affinityOf(e.key);
    if (named) affinities.add(`${named.host}/${formatCidr(named.cidr)}`);
  }
  return checkIpam({
    blocks: [...blocks4!, ...blocks6!].map((e) => decodeBlock(e.key, e.value)),
    handles,
    endpoints,
    pools: pools.map((p) => p.cidr),
    affinities,
    now: new Date(),
    graceSeconds,
  });
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
  await ipam.release(addresses);
  return `Released ${addresses.length} leaked address(es).`;
}

export function parsePoolCidr(text: string) {
  try {
    return parseCidr(text, 'pool CIDR');
  } catch (err) {
    throw new CtlError(messageOf(err));
  }
}
