/** The WorkloadEndpoint record both entrypoints write, named and labelled as Calico does. */
import type { Resource, WorkloadEndpointSpec } from '../datastore';
import { hostPrefix, type IpAddress } from '../net/address';

export interface EndpointIdentity {
  readonly node: string;
  /** `cni` (Mesos and other CNI runtimes) or `libnetwork` (Docker). */
  readonly orchestrator: string;
  readonly workload: string;
  readonly endpoint: string;
  /** `default` for CNI, `libnetwork` for Docker. */
  readonly namespace: string;
}

/** `<node>-<orchestrator>-<workload>-<endpoint>`, each part's own "-" doubled so the name splits back. */
export function workloadEndpointName(id: EndpointIdentity): string {
  return [id.node, id.orchestrator, id.workload, id.endpoint].map((part) => part.replace(/-/g, '--')).join('-');
}

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

export function buildWorkloadEndpoint(id: EndpointIdentity, facts: EndpointFacts): Resource<'WorkloadEndpoint'> {
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
      name: workloadEndpointName(id),
      namespace: id.namespace,
      labels: {
        ...facts.labels,
        'projectcalico.org/namespace': id.namespace,
        'projectcalico.org/orchestrator': id.orchestrator,
      },
      ...(facts.annotations ? { annotations: { ...facts.annotations } } : {}),
    },
    spec,
  };
}
