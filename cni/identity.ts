/**
 * How a CNI attachment is named in the datastore and on the host, as Calico does for Mesos:
 * orchestrator `cni`, workload = the container ID, endpoint = the interface, namespace `default`,
 * IPAM handle `<network>.<container ID>`.
 */
import { createHash } from 'node:crypto';
import { hostVethName } from '../shared/dataplane/names';
import type { EndpointIdentity } from '../shared/endpoints/workload-endpoint';

export const ORCHESTRATOR = 'cni';
export const ENDPOINT_NAMESPACE = 'default';

export function handleId(network: string, containerId: string): string {
  return `${network}.${containerId}`;
}

export function endpointIdentity(node: string, containerId: string, ifname: string): EndpointIdentity {
  return { node, orchestrator: ORCHESTRATOR, workload: containerId, endpoint: ifname, namespace: ENDPOINT_NAMESPACE };
}

/**
 * `cali` + the first 11 characters of the container ID for eth0, Calico's name. A second
 * interface of the same container (another network) would collide, so it is named from a hash
 * of container ID and interface instead.
 */
export function hostInterfaceName(containerId: string, ifname: string): string {
  if (ifname === 'eth0') return hostVethName(containerId);
  return hostVethName(createHash('sha1').update(`${containerId}.${ifname}`).digest('hex'));
}

/** eth0 keeps the preferred (metric 0) routes; ethN gets 100 + N, any other name 1000. */
export function routeMetricFor(ifname: string): number {
  if (ifname === 'eth0') return 0;
  const n = /^eth(\d{1,4})$/.exec(ifname);
  return n ? 100 + Number(n[1]) : 1000;
}
