/** The `calico-ipam` plugin's commands: addresses for one (network, container) handle. */
import { formatAddress, hostPrefix, parseAddress, type IpAddress } from '../shared/net';
import { datastoreOf, ipamOf, type CniContext } from './context';
import { CniCode, CniError } from './errors';
import { handleId } from './identity';
import { parseResult, type CniResult } from './result';

export function ipamResult(addresses: readonly IpAddress[]): CniResult {
  return { ips: addresses.map((a) => ({ address: hostPrefix(a) })), routes: [], dns: {} };
}

export async function ipamAdd(ctx: CniContext): Promise<CniResult> {
  return ipamResult(await allocate(ctx, { reuseHeld: true }));
}

/**
 * The addresses of this (network, container). With `reuseHeld` (the IPAM plugin on its own), a
 * repeat ADD answers with what the handle already holds. The main plugin allocates afresh instead:
 * it knows a finished ADD by its endpoint record, and addresses held by an unfinished one (crashed,
 * or running concurrently) must not be shared, since whoever fails gives back what it took.
 */
export async function allocate(ctx: CniContext, options: { reuseHeld: boolean }): Promise<IpAddress[]> {
  const { conf, env } = ctx;
  const handle = handleId(conf.name, env.containerId);
  const ipam = await ipamOf(ctx);
  const held = options.reuseHeld ? await ipam.handleAddresses(handle) : [];
  if (held.length > 0) {
    ctx.log.info('repeat ADD: returning the addresses the handle already holds', { handle });
    return held;
  }
  const attributes = { container: env.containerId, interface: env.ifname, network: conf.name, orchestrator: 'cni' };
  if (conf.requestedIps.length > 0) {
    const assigned: IpAddress[] = [];
    try {
      for (const address of conf.requestedIps) {
        const pools = address.version === 4 ? conf.ipam.ipv4Pools : conf.ipam.ipv6Pools;
        await ipam.assign({ address, handle, node: conf.nodename, pools, attributes });
        assigned.push(address);
      }
    } catch (err) {
      await ipam.release(assigned).catch(() => undefined);
      throw err;
    }
    ctx.log.info('assigned requested addresses', { handle, addresses: assigned.map(formatAddress).join(',') });
    return assigned;
  }
  const { ipv4, ipv6 } = await ipam.autoAssign({
    handle,
    node: conf.nodename,
    num4: conf.ipam.assignIpv4 ? 1 : 0,
    num6: conf.ipam.assignIpv6 ? 1 : 0,
    pools4: conf.ipam.ipv4Pools,
    pools6: conf.ipam.ipv6Pools,
    attributes,
  });
  ctx.log.info('assigned addresses', { handle, addresses: [...ipv4, ...ipv6].map(formatAddress).join(',') });
  return [...ipv4, ...ipv6];
}

export async function ipamDel(ctx: CniContext): Promise<void> {
  const handle = handleId(ctx.conf.name, ctx.env.containerId);
  const released = await (await ipamOf(ctx)).releaseByHandle(handle);
  ctx.log.info('released addresses', { handle, released });
}

/** The handle exists and holds every address of the previous result. */
export async function ipamCheck(ctx: CniContext): Promise<void> {
  const handle = handleId(ctx.conf.name, ctx.env.containerId);
  const held = new Set((await (await ipamOf(ctx)).handleAddresses(handle)).map(formatAddress));
  const prev = ctx.conf.prevResult ? parseResult(ctx.conf.prevResult, 'prevResult') : undefined;
  if (held.size === 0) throw new CniError(CniCode.CheckFailed, `IPAM handle ${handle} holds no address`);
  for (const ip of prev?.ips ?? []) {
    const address = formatAddress(parseAddress(ip.address.split('/')[0]!, 'prevResult.ips'));
    if (!held.has(address)) throw new CniError(CniCode.CheckFailed, `address ${address} is not allocated to ${handle}`);
  }
}

/** Releases this host's allocations of this network whose container is not among the valid attachments. */
export async function ipamGc(ctx: CniContext): Promise<void> {
  const { conf } = ctx;
  const valid = new Set((conf.validAttachments ?? []).map((a) => handleId(conf.name, a.containerID)));
  const ipam = await ipamOf(ctx);
  for (const [handle, holding] of await ipam.handlesWithPrefix(`${conf.name}.`)) {
    if (valid.has(handle) || !holding.nodes.has(conf.nodename)) continue;
    const released = await ipam.releaseByHandle(handle);
    ctx.log.info('GC released a stale allocation', { handle, released });
  }
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
