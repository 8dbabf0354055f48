/** The `calico-ipam` plugin's commands: the addresses of one CNI attachment (network, container, interface). */
import { allocationAttributes, handleOf, ownsLegacyAllocation, parseHandle, type CniAttachment } from '../shared/endpoints/identity';
import { releaseAttachmentAddresses, releaseWorkloadAddresses } from '../shared/endpoints/teardown';
import type { CompanionOutcome, ReleaseCompanion } from '../shared/ipam/ipam';
import type { Companion } from '../shared/ipam/batch';
import { formatAddress, hostPrefix, parseAddress, type IpAddress } from '../shared/net';
import { attachmentOf } from './attachment';
import { datastoreOf, ipamOf, type CniContext } from './context';
import { CniCode, CniError } from './errors';
import { parseResult, type CniResult } from './result';

export function ipamResult(addresses: readonly IpAddress[]): CniResult {
  return { ips: addresses.map((a) => ({ address: hostPrefix(a) })), routes: [], dns: {} };
}

export async function ipamAdd(ctx: CniContext): Promise<CniResult> {
  return ipamResult((await allocate(ctx, { reuseHeld: true })).addresses);
}

/**
 * The addresses of this attachment. With `reuseHeld` (the IPAM plugin on its own), a repeat ADD
 * answers with what the handle already holds. The main plugin allocates afresh instead: it knows
 * a finished ADD by its endpoint record, and addresses held by an unfinished one (crashed, or
 * running concurrently) must not be shared, since whoever fails gives back what it took. New
 * addresses come with `companion` (the main plugin's endpoint record) written in their
 * transaction when it can be: `companionWritten` says whether it was.
 */
export async function allocate(ctx: CniContext, options: { reuseHeld: boolean; companion?: Companion }): Promise<{ addresses: IpAddress[]; companionWritten: boolean }> {
  const { conf } = ctx;
  const attachment = attachmentOf(conf, ctx.env);
  const handle = handleOf(attachment);
  const ipam = await ipamOf(ctx);
  const held = options.reuseHeld ? await ipam.handleAddresses(handle) : [];
  if (held.length > 0) {
    ctx.log.info('repeat ADD: returning the addresses the handle already holds', { handle });
    return { addresses: held, companionWritten: false };
  }
  const attributes = allocationAttributes(attachment);
  if (conf.requestedIps.length > 0) {
    const assigned: IpAddress[] = [];
    try {
      for (const address of conf.requestedIps) {
        const pools = address.version === 4 ? conf.ipam.ipv4Pools : conf.ipam.ipv6Pools;
        await ipam.assign({ address, handle, node: conf.nodename, pools, attributes });
        assigned.push(address);
      }
    } catch (err) {
      await ipam.release(assigned, (a) => a.handle_id === handle).catch(() => undefined);
      throw err;
    }
    ctx.log.info('assigned requested addresses', { handle, addresses: assigned.map(formatAddress).join(',') });
    return { addresses: assigned, companionWritten: false };
  }
  const { ipv4, ipv6, companionWritten } = await ipam.autoAssign({
    handle,
    node: conf.nodename,
    num4: conf.ipam.assignIpv4 ? 1 : 0,
    num6: conf.ipam.assignIpv6 ? 1 : 0,
    pools4: conf.ipam.ipv4Pools,
    pools6: conf.ipam.ipv6Pools,
    attributes,
    ...(options.companion ? { companion: options.companion } : {}),
  });
  ctx.log.info('assigned addresses', { handle, addresses: [...ipv4, ...ipv6].map(formatAddress).join(','), ...(companionWritten ? { with: 'endpoint record' } : {}) });
  return { addresses: [...ipv4, ...ipv6], companionWritten };
}

export async function ipamDel(ctx: CniContext): Promise<void> {
  await release(ctx);
}

/**
 * Releases the attachment's addresses; `companion` (the main plugin's endpoint record) is deleted
 * in the same transaction where it is the attachment's. Returns what became of it (see
 * releaseAttachmentAddresses).
 */
export async function release(ctx: CniContext, companion?: ReleaseCompanion): Promise<CompanionOutcome | undefined> {
  const attachment = attachmentOf(ctx.conf, ctx.env);
  const { released, record } = await releaseAttachmentAddresses(await ipamOf(ctx), attachment, companion);
  ctx.log.info('released addresses', { handle: handleOf(attachment), released, ...(record === 'deleted' ? { with: 'endpoint record' } : {}) });
  return record;
}

/** The handle exists and holds every address of the previous result. */
export async function ipamCheck(ctx: CniContext): Promise<void> {
  const handle = handleOf(attachmentOf(ctx.conf, ctx.env));
  const held = new Set((await (await ipamOf(ctx)).handleAddresses(handle)).map(formatAddress));
  const prev = ctx.conf.prevResult ? parseResult(ctx.conf.prevResult, 'prevResult') : undefined;
  if (held.size === 0) throw new CniError(CniCode.CheckFailed, `IPAM handle ${handle} holds no address`);
  for (const ip of prev?.ips ?? []) {
    const address = formatAddress(parseAddress(ip.address.split('/')[0]!, 'prevResult.ips'));
    if (!held.has(address)) throw new CniError(CniCode.CheckFailed, `address ${address} is not allocated to ${handle}`);
  }
}

/**
 * Releases this host's allocations of exactly this network whose attachment is not among the
 * valid ones. Owners are read from the handle (or, for legacy handles, from the attributes),
 * never guessed from a prefix: network "calico" never touches "calico.prod"'s addresses.
 */
export async function ipamGc(ctx: CniContext): Promise<void> {
  const { conf } = ctx;
  const valid = new Set((conf.validAttachments ?? []).map((a) => `${a.containerID}/${a.ifname}`));
  const ipam = await ipamOf(ctx);
  const stale = new Map<string, CniAttachment>();
  for (const cidr of await ipam.hostBlocks(conf.nodename)) {
    for (const owner of await ipam.addressesIn(cidr)) {
      if (owner.attributes.node !== conf.nodename || !owner.handle) continue;
      const attachment = cniAttachmentOf(owner.handle, owner.attributes, conf.nodename);
      if (!attachment || attachment.network !== conf.name || valid.has(`${attachment.containerId}/${attachment.ifname}`)) continue;
      stale.set(`${attachment.containerId}/${attachment.ifname}`, attachment);
    }
  }
  for (const attachment of stale.values()) {
    const released = await releaseWorkloadAddresses(ipam, attachment);
    ctx.log.info('GC released a stale allocation', { handle: handleOf(attachment), released });
  }
}

/** The CNI attachment an allocation belongs to, from its handle or (legacy handles) its attributes. */
function cniAttachmentOf(handle: string, attributes: Readonly<Record<string, string>>, node: string): CniAttachment | undefined {
  const parsed = parseHandle(handle);
  if (parsed?.orchestrator === 'cni') return parsed.node === node ? parsed : undefined;
  if (parsed || attributes.orchestrator !== 'cni' || !attributes.network || !attributes.container) return undefined;
  const attachment: CniAttachment = { orchestrator: 'cni', node, network: attributes.network, containerId: attributes.container, ifname: attributes.interface ?? 'eth0' };
  return ownsLegacyAllocation(attachment, handle, attributes) ? attachment : undefined;
}

/** STATUS: the datastore answers (code 50 when it does not). */
export async function datastoreStatus(ctx: CniContext): Promise<void> {
  try {
    const ds = await datastoreOf(ctx);
    await ds.kv.get(ds.keys.ipamConfig());
  } catch (err) {
    throw new CniError(CniCode.NotAvailable, `the datastore is not reachable: ${(err as Error).message}`);
  }
}
