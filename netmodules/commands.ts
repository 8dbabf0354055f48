/**
 * The five commands of the net-modules protocol on the shared core: IPAM for `allocate`,
 * `reserve` and `release`, the dataplane and the endpoint record for `isolate` and `cleanup`.
 * Every command is all or nothing: a failure gives back what the command itself took.
 *
 * Owners: the isolator allocates before it knows the container, under a `uid` of its own, so the
 * addresses' handle is `mesos:<node>:<uid>`; `isolate` checks that every address it wires was
 * allocated so on this host and records those handles on the endpoint, and `cleanup` releases the
 * endpoint's addresses only where one of them owns it. The endpoint itself is the container's
 * (`mesos:<node>:<container id>`), as is its host veth.
 */
import { AlreadyExistsError, type Datastore } from '../shared/datastore';
import { requireNetns } from '../shared/dataplane/ip-command';
import { InterfaceExistsError } from '../shared/dataplane/errors';
import { installPolicyTable } from '../shared/dataplane/policy-table';
import { abandonWiring, randomMac, startWiring, unwireWorkload, wireWorkload, type WiringRuns } from '../shared/dataplane/workload';
import { PhaseTimer } from '../shared/diagnostics';
import { workloadMtu } from '../shared/routing/workload-mtu';
import { handleOf, hostVethName, linkOwnerTag, parseHandle, type MesosContainer } from '../shared/endpoints/identity';
import { sanitiseLabels } from '../shared/endpoints/labels';
import { exclusively } from '../shared/endpoints/workload-lock';
import { ensureGroupProfile } from '../shared/endpoints/profile';
import { IPAM_HANDLES_ANNOTATION, NETNS_ANNOTATION, buildWorkloadEndpoint, deleteEndpointOf, endpointOf, recordedIpamHandles } from '../shared/endpoints/workload-endpoint';
import { releaseWorkloadAddresses } from '../shared/endpoints/teardown';
import { CalicoError, messageOf } from '../shared/errors';
import type { OwnerTest } from '../shared/ipam/block';
import type { Ipam } from '../shared/ipam/ipam';
import type { Logger } from '../shared/log';
import { formatAddress, parseAddress, type IpAddress } from '../shared/net';
import type { NetmodulesRequest } from './request';

/** A command that cannot be done as asked; its message is the answer's `error`. */
export class NetmodulesError extends CalicoError {
  readonly code = 'NETMODULES_REFUSED';
}

export interface NetmodulesContext {
  readonly ds: Datastore;
  readonly ipam: Ipam;
  /** This host in the datastore (settings, NODENAME, the nodename file), whatever the isolator calls it. */
  readonly node: string;
  /** Where the node daemon records the workloads' MTU (shared/routing/workload-mtu.ts). */
  readonly mtuFile: string;
  readonly log: Logger;
  /**
   * Run by calico_mesos itself, with no node daemon: it makes sure the policy table's fixed part
   * exists before it wires a veth, unless the host enforces no policy (CALICO_NO_POLICY=true).
   */
  readonly closeWorkloadsFirst: boolean;
}

export type NetmodulesAnswer = { readonly ipv4?: string[]; readonly ipv6?: string[] };

/** The name the isolator gave the agent. */
const MESOS_HOSTNAME_ANNOTATION = 'projectcalico.org/mesos-hostname';

/** A net-modules workload: a container by its Mesos container ID, or an allocation by the isolator's uid. */
const mesosWorkload = (node: string, id: string): MesosContainer => ({ orchestrator: 'mesos', node, containerId: id });
const texts = (addresses: readonly IpAddress[]) => addresses.map(formatAddress);

/** Addresses of any net-modules container of this host: what `release` by address may free. */
function netmodulesOwned(node: string): OwnerTest {
  return (attribute) => {
    const owner = attribute.handle_id === null ? undefined : parseHandle(attribute.handle_id);
    return owner?.orchestrator === 'mesos' && owner.node === node;
  };
}

export async function runCommand(request: NetmodulesRequest, ctx: NetmodulesContext): Promise<NetmodulesAnswer> {
  switch (request.command) {
    case 'allocate':
      return allocate(request, ctx);
    case 'reserve':
      await reserve(ctx, request.uid, request.addresses, request.hostname);
      return {};
    case 'release':
      await release(request, ctx);
      return {};
    case 'isolate':
      await exclusively(mesosWorkload(ctx.node, request.containerId), () => isolate(request, ctx));
      return {};
    case 'cleanup':
      await exclusively(mesosWorkload(ctx.node, request.containerId), () => cleanup(request, ctx));
      return {};
  }
}

async function allocate(request: Extract<NetmodulesRequest, { command: 'allocate' }>, ctx: NetmodulesContext): Promise<NetmodulesAnswer> {
  const allocation = mesosWorkload(ctx.node, request.uid);
  const handle = handleOf(allocation);
  // Addresses asked for by label come first; the rest of num_ipv4 is chosen by IPAM.
  await reserve(ctx, request.uid, request.static4, request.hostname);
  const num4 = Math.max(request.num4 - request.static4.length, 0);
  let assigned: { ipv4: IpAddress[]; ipv6: IpAddress[] } = { ipv4: [], ipv6: [] };
  try {
    assigned = await ctx.ipam.autoAssign({ handle, node: ctx.node, num4, num6: request.num6, attributes: attributesOf(request.uid, request.hostname) });
    if (assigned.ipv4.length < num4 || assigned.ipv6.length < request.num6) {
      throw new NetmodulesError(`only ${assigned.ipv4.length} of ${num4} IPv4 and ${assigned.ipv6.length} of ${request.num6} IPv6 addresses were free; none were kept`);
    }
  } catch (err) {
    await ctx.ipam.release([...request.static4, ...assigned.ipv4, ...assigned.ipv6], (a) => a.handle_id === handle).catch((e) => ctx.log.error('could not give back addresses after a failed allocate', { error: messageOf(e) }));
    throw err;
  }
  const answer = { ipv4: texts([...request.static4, ...assigned.ipv4]), ipv6: texts(assigned.ipv6) };
  ctx.log.info('allocated', { uid: request.uid, ipv4: answer.ipv4.join(','), ipv6: answer.ipv6.join(',') });
  return answer;
}

function attributesOf(uid: string, hostname: string): Record<string, string> {
  return { orchestrator: 'mesos', uid, ...(hostname ? { 'mesos-hostname': hostname } : {}) };
}

/** Exactly these addresses, all or none. */
async function reserve(ctx: NetmodulesContext, uid: string, addresses: readonly IpAddress[], hostname: string): Promise<void> {
  const handle = handleOf(mesosWorkload(ctx.node, uid));
  const taken: IpAddress[] = [];
  try {
    for (const address of addresses) {
      await ctx.ipam.assign({ address, handle, node: ctx.node, attributes: attributesOf(uid, hostname) });
      taken.push(address);
    }
  } catch (err) {
    await ctx.ipam.release(taken, (a) => a.handle_id === handle).catch((e) => ctx.log.error('could not give back addresses after a failed reserve', { error: messageOf(e) }));
    throw err;
  }
  if (addresses.length > 0) ctx.log.info('reserved', { uid, addresses: texts(addresses).join(',') });
}

async function release(request: Extract<NetmodulesRequest, { command: 'release' }>, ctx: NetmodulesContext): Promise<void> {
  if ('uid' in request.by) {
    const released = await ctx.ipam.releaseByHandle(handleOf(mesosWorkload(ctx.node, request.by.uid)));
    ctx.log.info('released', { uid: request.by.uid, addresses: released });
    return;
  }
  const outcome = await ctx.ipam.release(request.by.ips, netmodulesOwned(ctx.node));
  ctx.log.info('released', { addresses: texts(outcome.released).join(','), alreadyFree: texts(outcome.notAllocated).join(',') });
  if (outcome.notOwned.length > 0) throw new NetmodulesError(`not released: ${texts(outcome.notOwned).join(', ')} belong(s) to a workload that is not a net-modules container of this host`);
}

async function isolate(request: Extract<NetmodulesRequest, { command: 'isolate' }>, ctx: NetmodulesContext): Promise<void> {
  const netns = `/proc/${request.pid}/ns/net`;
  // The ip runs that will wire the container start first: their start-up passes during the checks.
  const runs = startWiring(netns);
  try {
    await isolateWith(request, ctx, netns, runs);
  } finally {
    abandonWiring(runs);
  }
}

async function isolateWith(request: Extract<NetmodulesRequest, { command: 'isolate' }>, ctx: NetmodulesContext, netns: string, runs: WiringRuns): Promise<void> {
  const container = mesosWorkload(ctx.node, request.containerId);
  const timer = new PhaseTimer('ISOLATE');
  // The checks, and the profiles the container joins, at once.
  const [, existing, handles] = await Promise.all([
    requireNetns(netns).catch(() => {
      throw new NetmodulesError(`process ${request.pid} does not exist (no ${netns}): the executor is gone`);
    }),
    endpointOf(ctx.ds, container),
    ownersOf(ctx, request.addresses),
    ...request.netgroups.map((group) => ensureGroupProfile(ctx.ds, group)),
  ]);
  timer.lap('checks');
  if (existing) throw new NetmodulesError(`container ${request.containerId} is already isolated`);
  if (ctx.closeWorkloadsFirst) await installPolicyTable();
  const { labels, refused } = sanitiseLabels(request.labels.map((l) => [l.key, l.value] as const));
  if (refused.length > 0) ctx.log.warning('labels with reserved keys were dropped: only netgroups make a container a member', { container: request.containerId, labels: refused.join(',') });

  // We choose the container's MAC, so the record need not wait for the wiring: both go at once,
  // and whichever fails, both are undone (the record's create fails if another isolate won).
  const hostIf = hostVethName(container);
  const ownerTag = linkOwnerTag(container);
  const containerMac = randomMac();
  const record = buildWorkloadEndpoint(container, {
    containerID: request.containerId,
    addresses: request.addresses,
    profiles: request.netgroups,
    interfaceName: hostIf,
    mac: containerMac,
    labels,
    annotations: { [NETNS_ANNOTATION]: netns, [IPAM_HANDLES_ANNOTATION]: JSON.stringify(handles), [MESOS_HOSTNAME_ANNOTATION]: request.hostname },
  });
  const [wiring, recording] = await Promise.allSettled([
    timer.measure('dataplane', () => wireWorkload({ netns, containerIf: 'eth0', hostIf, ownerTag, containerMac, addresses: request.addresses, mtu: workloadMtu(ctx.mtuFile) }, runs)),
    timer.measure('record', () => ctx.ds.resources.create(record)),
  ]);
  timer.lap('wiring');
  if (wiring.status === 'rejected' || recording.status === 'rejected') {
    if (wiring.status === 'fulfilled') await unwireWorkload({ hostIf, ownerTag }).catch((e) => ctx.log.error('undo: veth removal failed', { error: messageOf(e) }));
    if (recording.status === 'fulfilled') await deleteEndpointOf(ctx.ds, container).catch((e) => ctx.log.error('undo: record removal failed', { error: messageOf(e) }));
    const err: unknown = wiring.status === 'rejected' ? wiring.reason : (recording as PromiseRejectedResult).reason;
    if (err instanceof InterfaceExistsError) throw new NetmodulesError(`container ${request.containerId} (pid ${request.pid}) already has an eth0`);
    if (err instanceof AlreadyExistsError) throw new NetmodulesError(`container ${request.containerId} is already isolated`);
    throw err;
  }
  timer.publish();
  ctx.log.info('isolated', { container: request.containerId, pid: request.pid, hostIf, addresses: texts(request.addresses).join(','), netgroups: request.netgroups.join(',') });
}

/** The handles owning each address: each must be a net-modules allocation of this host. */
async function ownersOf(ctx: NetmodulesContext, addresses: readonly IpAddress[]): Promise<string[]> {
  const owners = await Promise.all(addresses.map((address) => ctx.ipam.ownerOf(address)));
  const handles = new Set<string>();
  for (const [i, owner] of owners.entries()) {
    const parsed = owner?.handle ? parseHandle(owner.handle) : undefined;
    if (!owner?.handle || parsed?.orchestrator !== 'mesos' || parsed.node !== ctx.node) {
      throw new NetmodulesError(`${formatAddress(addresses[i]!)} was not allocated to a net-modules container of this host (${ctx.node}): allocate or reserve it first`);
    }
    handles.add(owner.handle);
  }
  return [...handles];
}

async function cleanup(request: Extract<NetmodulesRequest, { command: 'cleanup' }>, ctx: NetmodulesContext): Promise<void> {
  const container = mesosWorkload(ctx.node, request.containerId);
  const endpoint = await endpointOf(ctx.ds, container);
  // The isolator may clean up a container whose prepare failed: nothing of it exists, and that is fine.
  await unwireWorkload({ hostIf: hostVethName(container), ownerTag: linkOwnerTag(container) });
  if (!endpoint) {
    ctx.log.info('cleanup of an unknown container', { container: request.containerId });
    return;
  }
  const addresses = endpoint.spec.ipNetworks.map((n) => parseAddress(n.split('/')[0]!, 'ipNetworks'));
  const released = await releaseWorkloadAddresses(ctx.ipam, container, addresses, recordedIpamHandles(endpoint));
  await deleteEndpointOf(ctx.ds, container);
  ctx.log.info('cleaned up', { container: request.containerId, released });
}
