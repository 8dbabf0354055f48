/**
 * The `calico` plugin's commands: IPAM through the delegate, the workload wired by the core
 * dataplane, and its WorkloadEndpoint and Profile records. A failed ADD undoes what it did.
 */
import type { Resource } from '../shared/datastore';
import { abandonWiring, inspectWorkload, randomMac, startWiring, unwireWorkload, wireWorkload, type WiringRuns } from '../shared/dataplane/workload';
import { InterfaceExistsError } from '../shared/dataplane/errors';
import { installPolicyTable } from '../shared/dataplane/policy-table';
import { endpointNameOf, hostEndpointRange, hostVethName, linkOwnerTag, ENDPOINT_NAMESPACES, type CniAttachment } from '../shared/endpoints/identity';
import { ensureGroupProfile, ensureNetworkProfile, isLegacyNetworkProfile } from '../shared/endpoints/profile';
import { NETNS_ANNOTATION, buildWorkloadEndpoint, deleteEndpointOf, endpointCompanion, endpointOf, isEndpointOf, workloadOfEndpoint } from '../shared/endpoints/workload-endpoint';
import type { CompanionOutcome } from '../shared/ipam/ipam';
import { exclusively } from '../shared/endpoints/workload-lock';
import { PhaseTimer } from '../shared/diagnostics';
import { messageOf } from '../shared/errors';
import { formatAddress, hostPrefix, parseAddress, type IpAddress } from '../shared/net';
import { attachmentOf, routeMetricFor } from './attachment';
import { datastoreOf, ipamOf, type CniContext } from './context';
import type { CniEnv } from './env';
import { CniCode, CniError } from './errors';
import { delegateAdd, delegateCheck, delegateDel } from './ipam-delegate';
import { datastoreStatus, ipamGc } from './ipam-plugin';
import { releaseWorkloadAddresses } from '../shared/endpoints/teardown';
import { parseResult, type CniResult } from './result';
import { atLeast } from './version';

function resultFor(addresses: readonly IpAddress[], env: CniEnv, mac: string, mtu: number): CniResult {
  return {
    interfaces: [{ name: env.ifname, mac, sandbox: env.netns, mtu }],
    ips: addresses.map((a) => ({ address: hostPrefix(a), interface: 0 })),
    routes: [],
    dns: {},
  };
}

/** The host end of the attachment's veth and the tag that says it is this attachment's. */
function interfacesOf(attachment: CniAttachment) {
  return { hostIf: hostVethName(attachment), ownerTag: linkOwnerTag(attachment) };
}

export async function add(ctx: CniContext): Promise<CniResult> {
  const attachment = attachmentOf(ctx.conf, ctx.env);
  return exclusively(attachment, () => addAttachment(ctx, attachment));
}

async function addAttachment(ctx: CniContext, attachment: CniAttachment): Promise<CniResult> {
  // The two ip runs that will wire the workload start first: their start-up (through nsenter for
  // the container's) passes while the workload is looked up and its addresses allocated.
  const runs = startWiring(ctx.env.netns!);
  try {
    return await addWith(ctx, attachment, runs);
  } finally {
    abandonWiring(runs);
  }
}

async function addWith(ctx: CniContext, attachment: CniAttachment, runs: WiringRuns): Promise<CniResult> {
  const { conf, env, log } = ctx;
  const netns = env.netns!;
  const timer = new PhaseTimer('ADD');
  const { hostIf, ownerTag } = interfacesOf(attachment);
  const ds = await datastoreOf(ctx);
  const name = endpointNameOf(attachment);

  // The record of a finished ADD and the network's profile, in one round trip: a member-local
  // read, since the record is created only if absent, and the profile likewise. (Issued while
  // the allocation's write is in flight it only waits for that write: measured slower than one
  // after the other.)
  const [found, profile] = await ds.resources.getMany([
    { kind: 'WorkloadEndpoint', name, namespace: ENDPOINT_NAMESPACES.cni },
    { kind: 'Profile', name: conf.name },
  ], { serializable: true });
  const existing = found as Resource<'WorkloadEndpoint'> | undefined;
  timer.lap('lookup');
  if (existing && !isEndpointOf(existing, attachment)) {
    // The same container and interface, attached to another network: never taken over.
    throw new InterfaceExistsError(env.ifname, `in container ${env.containerId}: it is attached to network "${existing.spec.profiles[0] ?? '?'}"`);
  }
  if (existing) {
    const state = await inspectWorkload({ netns, containerIf: env.ifname, hostIf });
    // The wiring found must be the one the record describes: crashed attempts may each have left
    // one of the two.
    if (state.host.exists && state.container.exists && existing.spec.mac && state.container.mac === existing.spec.mac) {
      log.info('repeat ADD: the workload is already wired', { endpoint: name });
      const addresses = existing.spec.ipNetworks.map((n) => parseAddress(n.split('/')[0]!, 'ipNetworks'));
      return resultFor(addresses, env, existing.spec.mac, conf.mtu);
    }
  }

  // Without the daemon, nobody else closes the workloads before their endpoints are programmed.
  if (ctx.standalone && !conf.noPolicy) await installPolicyTable();
  if (conf.refusedLabels.length > 0) log.warning('labels with reserved keys were dropped: only attaching to a network makes a workload its member', { labels: conf.refusedLabels.join(',') });
  // We choose the container's MAC, so the record need not wait for the wiring: our own IPAM
  // writes it in the allocation's transaction (created, or replacing the stale one found), else it
  // is written while the workload is wired. Whichever fails, both are undone (a veth or record
  // found in the way was never taken over, so never removed).
  const containerMac = randomMac();
  const endpointWith = (addresses: readonly IpAddress[]) => buildWorkloadEndpoint(attachment, {
    containerID: env.containerId,
    addresses,
    // The network's profile first (earlier releases read the network from it), then the groups.
    profiles: [conf.name, ...conf.groups.filter((group) => group !== conf.name)],
    interfaceName: hostIf,
    mac: containerMac,
    labels: conf.labels,
    annotations: { [NETNS_ANNOTATION]: netns },
  });
  const recordOp = (addresses: readonly IpAddress[]) => (existing ? ds.resources.updateOp(replacing(endpointWith(addresses), existing)) : ds.resources.createOp(endpointWith(addresses)).op);
  const { result: ipamResult, undo: undoIpam, recorded } = await delegateAdd(ctx, recordOp);
  const addresses = ipamResult.ips.map((ip) => parseAddress(ip.address.split('/')[0]!, 'IPAM result'));
  if (addresses.length === 0) throw new CniError(CniCode.NoAddressAvailable, `IPAM plugin "${conf.ipam.type}" returned no address`);
  timer.lap('ipam');

  const [wiring, recording] = await Promise.allSettled([
    timer.measure('dataplane', () => wireWorkload({ netns, containerIf: env.ifname, hostIf, ownerTag, containerMac, addresses, mtu: conf.mtu, routeMetric: routeMetricFor(env.ifname) }, runs)),
    timer.measure('record', () => Promise.all([
      profile && !isLegacyNetworkProfile(profile as Resource<'Profile'>) ? undefined : ensureNetworkProfile(ds, conf.name),
      ...conf.groups.map((group) => ensureGroupProfile(ds, group)),
    ]).then(() => (recorded ? undefined : writeEndpoint(ctx, endpointWith(addresses), existing)))),
  ]);
  timer.lap('wiring');
  if (wiring.status === 'fulfilled' && recording.status === 'fulfilled') {
    timer.publish();
    log.info('workload added', { endpoint: name, addresses: addresses.map(formatAddress).join(','), hostIf });
    return resultFor(addresses, env, containerMac, conf.mtu);
  }
  const err: unknown = wiring.status === 'rejected' ? wiring.reason : (recording as PromiseRejectedResult).reason;
  log.error('ADD failed, undoing it', { error: messageOf(err) });
  if (wiring.status === 'fulfilled') await unwireWorkload(interfacesOf(attachment)).catch((e) => log.error('undo: veth removal failed', { error: messageOf(e) }));
  if (recorded || recording.status === 'fulfilled') await deleteEndpointOf(ds, attachment).catch((e) => log.error('undo: record removal failed', { error: messageOf(e) }));
  await undoIpam().catch((e) => log.error('undo: address release failed', { error: messageOf(e) }));
  throw err;
}

/** Creates the record, or replaces a stale one left by an earlier attempt for the same container. */
async function writeEndpoint(ctx: CniContext, endpoint: Resource<'WorkloadEndpoint'>, stale: Resource<'WorkloadEndpoint'> | undefined): Promise<void> {
  const ds = await datastoreOf(ctx);
  if (!stale) {
    await ds.resources.create(endpoint);
    return;
  }
  await ds.resources.update(replacing(endpoint, stale));
}

/** `endpoint` in place of `stale`: its metadata (uid, creation) kept, guarded by its version. */
function replacing(endpoint: Resource<'WorkloadEndpoint'>, stale: Resource<'WorkloadEndpoint'>): Resource<'WorkloadEndpoint'> {
  return { ...endpoint, metadata: { ...stale.metadata, ...endpoint.metadata, resourceVersion: stale.metadata.resourceVersion } };
}

/**
 * DEL never depends on what survived: with or without a netns, a veth or a record, it removes
 * what is there and always releases the addresses. It touches only this attachment's own: a host
 * link, record or address of another owner stays. The first failure is reported after trying all.
 */
export async function del(ctx: CniContext): Promise<void> {
  const attachment = attachmentOf(ctx.conf, ctx.env);
  await exclusively(attachment, () => delAttachment(ctx, attachment));
}

async function delAttachment(ctx: CniContext, attachment: CniAttachment): Promise<void> {
  const { log } = ctx;
  const failures: unknown[] = [];
  const attempt = async (what: string, step: () => Promise<unknown>) => {
    try {
      const outcome = await step();
      if (outcome === 'not ours') log.warning(`DEL: ${what}: it belongs to another workload and was left alone`);
    } catch (err) {
      log.error(`DEL: ${what} failed`, { error: messageOf(err) });
      failures.push(err);
    }
  };
  // Independent steps, all tried, at once. Our own IPAM deletes the record in its release's
  // transaction (one etcd call for both, in the daemon); whatever it did not do with it, the
  // record is deleted apart.
  const timer = new PhaseTimer('DEL');
  await Promise.all([
    timer.measure('interfaces', () => attempt('removing the interfaces', () => unwireWorkload(interfacesOf(attachment)))),
    timer.measure('datastore', async () => {
      let record: CompanionOutcome | undefined;
      await attempt('releasing the addresses', async () => {
        record = await delegateDel(ctx, endpointCompanion(await datastoreOf(ctx), attachment));
      });
      await attempt('deleting the endpoint record', async () => record ?? deleteEndpointOf(await datastoreOf(ctx), attachment));
    }),
  ]);
  if (failures.length > 0) throw failures[0];
  timer.publish();
  log.info('workload deleted', { endpoint: endpointNameOf(attachment) });
}

/** CHECK (0.4.0 and later): the interfaces, addresses and routes of prevResult exist, and so do the record and the allocation. */
export async function check(ctx: CniContext): Promise<void> {
  const { conf, env } = ctx;
  if (!atLeast(conf.cniVersion, '0.4.0')) throw new CniError(CniCode.IncompatibleVersion, `CHECK is not supported for CNI version ${conf.cniVersion} (0.4.0 and later)`);
  if (!conf.prevResult) throw new CniError(CniCode.InvalidConfig, 'invalid network config: CHECK needs "prevResult"');
  const prev = parseResult(conf.prevResult, 'prevResult');
  const attachment = attachmentOf(conf, env);
  const { hostIf } = interfacesOf(attachment);
  const state = await inspectWorkload({ netns: env.netns!, containerIf: env.ifname, hostIf });
  const fail = (why: string) => new CniError(CniCode.CheckFailed, `CHECK failed for ${env.containerId}/${env.ifname}: ${why}`);
  if (!state.container.exists) throw fail(`interface ${env.ifname} is missing in ${env.netns}`);
  if (!state.host.exists || !state.host.up) throw fail(`host interface ${hostIf} is missing or down`);
  const prevMac = prev.interfaces?.find((i) => i.name === env.ifname)?.mac;
  if (prevMac && prevMac !== state.container.mac) throw fail(`interface ${env.ifname} has MAC ${state.container.mac}, prevResult says ${prevMac}`);
  for (const ip of prev.ips) {
    const address = formatAddress(parseAddress(ip.address.split('/')[0]!, 'prevResult.ips'));
    if (!state.container.addresses.some((a) => a.split('/')[0] === address)) throw fail(`address ${address} is not on ${env.ifname}`);
    if (!state.host.routes.includes(address)) throw fail(`the host has no route to ${address} via ${hostIf}`);
  }
  if (!(await endpointOf(await datastoreOf(ctx), attachment))) throw fail(`workload endpoint ${endpointNameOf(attachment)} is not in the datastore`);
  await delegateCheck(ctx);
}

/**
 * GC (1.1.0): this host's endpoints and allocations of exactly this network that the runtime no
 * longer knows. Endpoints are read from this host's own keys, and owners matched exactly.
 */
export async function gc(ctx: CniContext): Promise<void> {
  const { conf, log } = ctx;
  const valid = new Set((conf.validAttachments ?? []).map((a) => `${a.containerID}/${a.ifname}`));
  const ds = await datastoreOf(ctx);
  const ipam = await ipamOf(ctx);
  for await (const page of ds.resources.pages('WorkloadEndpoint', { ...hostEndpointRange(conf.nodename, 'cni'), skipMalformed: true })) {
    for (const endpoint of page) {
      const attachment = workloadOfEndpoint(endpoint);
      if (attachment?.orchestrator !== 'cni' || attachment.node !== conf.nodename || attachment.network !== conf.name) continue;
      if (valid.has(`${attachment.containerId}/${attachment.ifname}`)) continue;
      await exclusively(attachment, async () => {
        await unwireWorkload(interfacesOf(attachment)).catch((e) => log.warning('GC: veth removal failed', { error: messageOf(e) }));
        await deleteEndpointOf(ds, attachment).catch((e) => log.warning('GC: endpoint removal failed', { error: messageOf(e) }));
        await releaseWorkloadAddresses(ipam, attachment);
      });
      log.info('GC removed a stale endpoint', { endpoint: endpoint.metadata.name });
    }
  }
  if (conf.ipam.type === 'calico-ipam') await ipamGc(ctx);
}

export const status = datastoreStatus;
