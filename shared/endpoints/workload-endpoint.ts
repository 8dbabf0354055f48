/**
 * The WorkloadEndpoint record every entrypoint writes, named and labelled as Calico does, and
 * tagged with its owner so that only the workload that wrote it ever deletes it.
 */
import { decodeResource, type Datastore, type Resource, type WorkloadEndpointSpec } from '../datastore';
import type { ReleaseCompanion } from '../ipam/ipam';
import { hostPrefix, type IpAddress } from '../net/address';
import { endpointIdentity, endpointNameOf, identityKey, workloadOfKey, type Workload } from './identity';

export interface EndpointFacts {
  readonly containerID: string;
  readonly addresses: readonly IpAddress[];
  readonly profiles: readonly string[];
  readonly interfaceName: string;
  readonly mac?: string;
  readonly labels?: Readonly<Record<string, string>>;
  /** Facts for garbage collection and restarts (the netns path, Docker's network ID...). */
  readonly annotations?: Readonly<Record<string, string>>;
}

/** The annotation holding a workload's network namespace path (CNI_NETNS, or Docker's sandbox). */
export const NETNS_ANNOTATION = 'projectcalico.org/netns';
/** The Docker network an endpoint belongs to (the driver API names networks by ID only). */
export const DOCKER_NETWORK_ANNOTATION = 'projectcalico.org/docker-network';
/**
 * The IPAM handles of a net-modules container's addresses (a JSON list): the isolator allocates
 * them under a uid of its own before the container exists.
 */
export const IPAM_HANDLES_ANNOTATION = 'projectcalico.org/ipam-handles';
/** The exact identity of the workload that wrote the record (identity.ts's identityKey). */
export const OWNER_ANNOTATION = 'projectcalico.org/owner';

type Endpoint = Resource<'WorkloadEndpoint'>;

export function buildWorkloadEndpoint(workload: Workload, facts: EndpointFacts): Endpoint {
  const id = endpointIdentity(workload);
  const spec: WorkloadEndpointSpec = {
    orchestrator: id.orchestrator,
    workload: id.workload,
    node: id.node,
    containerID: facts.containerID,
    endpoint: id.endpoint,
    ipNetworks: facts.addresses.map(hostPrefix),
    profiles: [...facts.profiles],
    interfaceName: facts.interfaceName,
    ...(facts.mac ? { mac: facts.mac } : {}),
  };
  return {
    kind: 'WorkloadEndpoint',
    apiVersion: 'projectcalico.org/v3',
    metadata: {
      name: endpointNameOf(workload),
      namespace: id.namespace,
      labels: {
        ...facts.labels,
        'projectcalico.org/namespace': id.namespace,
        'projectcalico.org/orchestrator': id.orchestrator,
      },
      annotations: { ...facts.annotations, [OWNER_ANNOTATION]: identityKey(workload) },
    },
    spec,
  };
}

/**
 * Whether the record was written for exactly this workload. Records of earlier releases carry no
 * owner annotation: for them the spec must match (a CNI record's first profile is its network).
 */
export function isEndpointOf(endpoint: Endpoint, workload: Workload): boolean {
  const owner = endpoint.metadata.annotations?.[OWNER_ANNOTATION];
  if (owner !== undefined) return owner === identityKey(workload);
  const { spec } = endpoint;
  const id = endpointIdentity(workload);
  if (spec.orchestrator !== id.orchestrator || spec.node !== id.node || spec.endpoint !== id.endpoint) return false;
  return workload.orchestrator !== 'cni' || (spec.containerID === workload.containerId && spec.profiles[0] === workload.network);
}

/** The workload an endpoint record belongs to: its owner annotation, or (older records) its spec. */
export function workloadOfEndpoint(endpoint: Endpoint): Workload | undefined {
  const { spec } = endpoint;
  const owner = endpoint.metadata.annotations?.[OWNER_ANNOTATION];
  if (owner !== undefined) return workloadOfKey(owner);
  switch (spec.orchestrator) {
    case 'cni':
      return spec.containerID && spec.profiles[0] ? { orchestrator: 'cni', node: spec.node, network: spec.profiles[0], containerId: spec.containerID, ifname: spec.endpoint } : undefined;
    case 'libnetwork':
      return { orchestrator: 'libnetwork', node: spec.node, endpointId: spec.endpoint };
    case 'mesos':
      return spec.workload ? { orchestrator: 'mesos', node: spec.node, containerId: spec.workload } : undefined;
    default:
      return undefined;
  }
}

/** The workload's record, or undefined when there is none or the record of that name is another's. */
export async function endpointOf(ds: Datastore, workload: Workload): Promise<Endpoint | undefined> {
  const endpoint = await ds.resources.get('WorkloadEndpoint', endpointNameOf(workload), endpointIdentity(workload).namespace);
  return endpoint && isEndpointOf(endpoint, workload) ? endpoint : undefined;
}

/**
 * The workload's record as a release's companion (ipam/releaser.ts): deleted with its addresses
 * where it is the workload's own. One that cannot be decoded is left to deleteEndpointOf, which says why.
 */
export function endpointCompanion(ds: Datastore, workload: Workload): ReleaseCompanion {
  return {
    key: ds.resources.keyOf('WorkloadEndpoint', endpointNameOf(workload), endpointIdentity(workload).namespace),
    owns: (entry) => isEndpointOf(decodeResource('WorkloadEndpoint', entry), workload),
  };
}

/** Deletes the workload's own record, guarded by its revision; another owner's record stays. */
export async function deleteEndpointOf(ds: Datastore, workload: Workload): Promise<'deleted' | 'absent' | 'not ours'> {
  const endpoint = await ds.resources.get('WorkloadEndpoint', endpointNameOf(workload), endpointIdentity(workload).namespace);
  if (!endpoint) return 'absent';
  if (!isEndpointOf(endpoint, workload)) return 'not ours';
  const deleted = await ds.resources.delete('WorkloadEndpoint', endpoint.metadata.name, endpoint.metadata.namespace, endpoint.metadata.resourceVersion);
  return deleted ? 'deleted' : 'absent';
}

/** The handles a net-modules endpoint records for its addresses (none when absent or unreadable). */
export function recordedIpamHandles(endpoint: Endpoint): string[] {
  try {
    const list = JSON.parse(endpoint.metadata.annotations?.[IPAM_HANDLES_ANNOTATION] ?? '[]') as unknown;
    return Array.isArray(list) ? list.filter((h): h is string => typeof h === 'string') : [];
  } catch {
    return [];
  }
}
