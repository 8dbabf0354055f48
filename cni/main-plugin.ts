/**
 * The `calico` plugin's commands: IPAM through the delegate, the workload wired by the core
 * dataplane, and its WorkloadEndpoint and Profile records. A failed ADD undoes what it did.
 */
import type { Resource } from '../shared/datastore';
import { inspectWorkload, unwireWorkload, wireWorkload } from '../shared/dataplane/workload';
import { ensureNetworkProfile } from '../shared/endpoints/profile';
import { NETNS_ANNOTATION, buildWorkloadEndpoint, workloadEndpointName } from '../shared/endpoints/workload-endpoint';
import { messageOf } from '../shared/errors';
import { formatAddress, hostPrefix, parseAddress, type IpAddress } from '../shared/net';
import type { NetConf } from './config';
import { datastoreOf, type CniContext } from './context';
import type { CniEnv } from './env';
import { CniCode, CniError } from './errors';
import { ENDPOINT_NAMESPACE, ORCHESTRATOR, endpointIdentity, hostInterfaceName, routeMetricFor } from './identity';
import { delegateAdd, delegateCheck, delegateDel } from './ipam-delegate';
import { datastoreStatus, ipamGc } from './ipam-plugin';
import { parseResult, type CniResult } from './result';
import { atLeast } from './version';

function endpointName(conf: NetConf, env: CniEnv): string {
  return workloadEndpointName(endpointIdentity(conf.nodename, env.containerId, env.ifname));
}

function resultFor(addresses: readonly IpAddress[], env: CniEnv, mac: string, mtu: number): CniResult {
  return {
    interfaces: [{ name: env.ifname, mac, sandbox: env.netns, mtu }],
    ips: addresses.map((a) => ({ address: hostPrefix(a), interface: 0 })),
    routes: [],
    dns: {},
  };
}

export async function add(ctx: CniContext): Promise<CniResult> {
  const { conf, env, log } = ctx;
  const netns = env.netns!;
  const hostIf = hostInterfaceName(env.containerId, env.ifname);
  const ds = await datastoreOf(ctx);
  const name = endpointName(conf, env);

  const existing = await ds.resources.get('WorkloadEndpoint', name, ENDPOINT_NAMESPACE);
  if (existing) {
    const state = await inspectWorkload({ netns, containerIf: env.ifname, hostIf });
    if (state.host.exists && state.container.exists && existing.spec.mac) {
      log.info('repeat ADD: the workload is already wired', { endpoint: name });
      const addresses = existing.spec.ipNetworks.map((n) => parseAddress(n.split('/')[0]!, 'ipNetworks'));
      return resultFor(addresses, env, existing.spec.mac, conf.mtu);
    }
  }

  const { result: ipamResult, undo: undoIpam } = await delegateAdd(ctx);
  const addresses = ipamResult.ips.map((ip) => parseAddress(ip.address.split('/')[0]!, 'IPAM result'));
  if (addresses.length === 0) throw new CniError(CniCode.NoAddressAvailable, `IPAM plugin "${conf.ipam.type}" returned no address`);

  let wired = false;
  try {
    await ensureNetworkProfile(ds, conf.name);
    const { containerMac } = await wireWorkload({ netns, containerIf: env.ifname, hostIf, addresses, mtu: conf.mtu, routeMetric: routeMetricFor(env.ifname) });
    wired = true;
    const endpoint = buildWorkloadEndpoint(endpointIdentity(conf.nodename, env.containerId, env.ifname), {
      containerID: env.containerId,
      addresses,
      profiles: [conf.name],
      interfaceName: hostIf,
      mac: containerMac,
      labels: conf.labels,
      annotations: { [NETNS_ANNOTATION]: netns },
    });
    await writeEndpoint(ctx, endpoint, existing);
    log.info('workload added', { endpoint: name, addresses: addresses.map(formatAddress).join(','), hostIf });
    return resultFor(addresses, env, containerMac, conf.mtu);
  } catch (err) {
    log.error('ADD failed, undoing it', { error: messageOf(err) });
    // Only our own interface is removed: a clash with an existing one never took it over.
    if (wired) await unwireWorkload({ netns, containerIf: env.ifname, hostIf }).catch((e) => log.error('undo: veth removal failed', { error: messageOf(e) }));
    await undoIpam().catch((e) => log.error('undo: address release failed', { error: messageOf(e) }));
    throw err;
  }
}

/** Creates the record, or replaces a stale one left by an earlier attempt for the same container. */
async function writeEndpoint(ctx: CniContext, endpoint: Resource<'WorkloadEndpoint'>, stale: Resource<'WorkloadEndpoint'> | undefined): Promise<void> {
  const ds = await datastoreOf(ctx);
  if (!stale) {
    await ds.resources.create(endpoint);
    return;
  }
  await ds.resources.update({ ...endpoint, metadata: { ...stale.metadata, ...endpoint.metadata, resourceVersion: stale.metadata.resourceVersion } });
}

/**
 * DEL never depends on what survived: with or without a netns, a veth or a record, it removes
 * what is there and always releases the addresses. The first failure is reported after trying all.
 */
export async function del(ctx: CniContext): Promise<void> {
  const { conf, env, log } = ctx;
  const failures: unknown[] = [];
  const attempt = async (what: string, step: () => Promise<unknown>) => {
    try {
      await step();
    } catch (err) {
      log.error(`DEL: ${what} failed`, { error: messageOf(err) });
      failures.push(err);
    }
  };
  await attempt('removing the interfaces', () => unwireWorkload({ netns: env.netns, containerIf: env.ifname, hostIf: hostInterfaceName(env.containerId, env.ifname) }));
  await attempt('deleting the endpoint record', async () => (await datastoreOf(ctx)).resources.delete('WorkloadEndpoint', endpointName(conf, env), ENDPOINT_NAMESPACE));
  await attempt('releasing the addresses', () => delegateDel(ctx));
  if (failures.length > 0) throw failures[0];
  log.info('workload deleted', { endpoint: endpointName(conf, env) });
}

/** CHECK (0.4.0 and later): the interfaces, addresses and routes of prevResult exist, and so do the record and the allocation. */
export async function check(ctx: CniContext): Promise<void> {
  const { conf, env } = ctx;
  if (!atLeast(conf.cniVersion, '0.4.0')) throw new CniError(CniCode.IncompatibleVersion, `CHECK is not supported for CNI version ${conf.cniVersion} (0.4.0 and later)`);
  if (!conf.prevResult) throw new CniError(CniCode.InvalidConfig, 'invalid network config: CHECK needs "prevResult"');
  const prev = parseResult(conf.prevResult, 'prevResult');
  const hostIf = hostInterfaceName(env.containerId, env.ifname);
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
  const endpoint = await (await datastoreOf(ctx)).resources.get('WorkloadEndpoint', endpointName(conf, env), ENDPOINT_NAMESPACE);
  if (!endpoint) throw fail(`workload endpoint ${endpointName(conf, env)} is not in the datastore`);
  await delegateCheck(ctx);
}

/** GC (1.1.0): this host's endpoints and allocations of this network that the runtime no longer knows. */
export async function gc(ctx: CniContext): Promise<void> {
  const { conf, log } = ctx;
  const valid = new Set((conf.validAttachments ?? []).map((a) => `${a.containerID}/${a.ifname}`));
  const ds = await datastoreOf(ctx);
  for (const endpoint of await ds.resources.list('WorkloadEndpoint', ENDPOINT_NAMESPACE)) {
    const { spec } = endpoint;
    if (spec.orchestrator !== ORCHESTRATOR || spec.node !== conf.nodename || !spec.profiles.includes(conf.name)) continue;
    if (valid.has(`${spec.containerID}/${spec.endpoint}`)) continue;
    await unwireWorkload({ containerIf: spec.endpoint, hostIf: spec.interfaceName }).catch((e) => log.warning('GC: veth removal failed', { error: messageOf(e) }));
    await ds.resources.delete('WorkloadEndpoint', endpoint.metadata.name, ENDPOINT_NAMESPACE, endpoint.metadata.resourceVersion).catch(() => undefined);
    log.info('GC removed a stale endpoint', { endpoint: endpoint.metadata.name });
  }
  if (conf.ipam.type === 'calico-ipam') await ipamGc(ctx);
}

export const status = datastoreStatus;
