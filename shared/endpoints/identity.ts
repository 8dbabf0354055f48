/**
 * Who owns what, decided in one place for every orchestrator: the IPAM handle of a workload's
 * addresses, the name of its WorkloadEndpoint record, the name and owner tag of its host veth.
 *
 * Every name is built from the whole identity, so two workloads never share one:
 * - CNI (Mesos Unified containerizer, any runtime): an attachment is (host, network, container
 *   ID, interface). Its handle is `cni:<host>:<network>:<container ID>:<interface>`; none of the
 *   parts may hold ":" (CNI forbids it in interface names, and our rules for host names, networks
 *   and container IDs allow only letters, digits, "_", "." and "-"), so the encoding cannot
 *   collide. Calico's own `<network>.<container ID>` could: network `a` with container `b.c` and
 *   network `a.b` with container `c` are both `a.b.c`, and the same container ID on two hosts
 *   (the CNI spec promises unique IDs per runtime, not per cluster) is one handle.
 * - Docker: an address is requested before Docker names its endpoint, so each gets a handle of
 *   its own, `libnetwork:<uuid>`, tied to its endpoint by the `endpoint` attribute at
 *   CreateEndpoint. The endpoint itself is `libnetwork:endpoint:<host>:<endpoint ID>`.
 * - net-modules (Mesos): the isolator allocates before the container exists, under a uid of its
 *   own: the addresses' handle is `mesos:<host>:<uid>`, and the container (its endpoint record and
 *   veth) is `mesos:<host>:<container ID>`, whose record lists the handles of its addresses.
 * Host veths are `cali` + 11 hex digits of a SHA-1 of the identity key, as Calico names
 * Kubernetes pods' veths, and carry the key's SHA-256 as their link alias: a link is removed only
 * when its alias says it is ours.
 */
import { createHash, randomUUID } from 'node:crypto';

export type Orchestrator = 'cni' | 'libnetwork' | 'mesos';

export interface CniAttachment {
  readonly orchestrator: 'cni';
  readonly node: string;
  readonly network: string;
  readonly containerId: string;
  readonly ifname: string;
}

export interface DockerEndpoint {
  readonly orchestrator: 'libnetwork';
  readonly node: string;
  readonly endpointId: string;
}

export interface MesosContainer {
  readonly orchestrator: 'mesos';
  readonly node: string;
  readonly containerId: string;
}

export type Workload = CniAttachment | DockerEndpoint | MesosContainer;

/** A WorkloadEndpoint's name parts, as Calico names them. */
export interface EndpointIdentity {
  readonly node: string;
  readonly orchestrator: Orchestrator;
  readonly workload: string;
  readonly endpoint: string;
  /** `default` for CNI and net-modules, `libnetwork` for Docker. */
  readonly namespace: string;
}

/** The namespace of each orchestrator's endpoint records. */
export const ENDPOINT_NAMESPACES: Readonly<Record<Orchestrator, string>> = { cni: 'default', libnetwork: 'libnetwork', mesos: 'default' };
/** Docker endpoints' workload segment, as Calico's libnetwork plugin writes it. */
const DOCKER_WORKLOAD = 'libnetwork';
const HANDLE_SEPARATOR = ':';
const HOST_VETH_PREFIX = 'cali';
/** The tag a host veth's alias carries: whose link it is. */
const OWNER_TAG_PREFIX = 'calico:';

/** Parts that end up in names: the rules that keep the encodings above unambiguous. */
export const NAME_PART = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** The exact key of a workload: its handle for CNI and net-modules, its endpoint for Docker. */
export function identityKey(workload: Workload): string {
  switch (workload.orchestrator) {
    case 'cni':
      return ['cni', workload.node, workload.network, workload.containerId, workload.ifname].join(HANDLE_SEPARATOR);
    case 'libnetwork':
      return ['libnetwork', 'endpoint', workload.node, workload.endpointId].join(HANDLE_SEPARATOR);
    case 'mesos':
      return ['mesos', workload.node, workload.containerId].join(HANDLE_SEPARATOR);
  }
}

/** The IPAM handle of a CNI attachment, or of a net-modules allocation (its containerId is the isolator's uid). */
export function handleOf(workload: CniAttachment | MesosContainer): string {
  return identityKey(workload);
}

/**
 * The handle of a host's tunnel address, as Calico names it (`vxlan-tunnel-addr-<node>`,
 * `ipip-tunnel-addr-<node>`): no workload's handle starts so, and the garbage collector leaves it.
 */
export function tunnelHandle(kind: 'vxlan' | 'ipip', node: string): string {
  return `${kind}-tunnel-addr-${node}`;
}

/** A new handle for one address Docker asks for (RequestAddress names no endpoint). */
export function newDockerHandle(): string {
  return ['libnetwork', randomUUID()].join(HANDLE_SEPARATOR);
}

/** What a handle of ours says about its owner: the workload, or only "Docker's"; undefined for anyone else's (Calico's, legacy). */
export function parseHandle(handle: string): CniAttachment | MesosContainer | { readonly orchestrator: 'libnetwork' } | undefined {
  const parts = handle.split(HANDLE_SEPARATOR);
  if (parts[0] === 'libnetwork' && parts.length === 2 && parts[1]) return { orchestrator: 'libnetwork' };
  const workload = workloadOfKey(handle);
  return workload?.orchestrator === 'libnetwork' ? undefined : workload;
}

/** The workload an identity key names (a handle, or the owner annotation of an endpoint record). */
export function workloadOfKey(key: string): Workload | undefined {
  const parts = key.split(HANDLE_SEPARATOR);
  const names = (...indexes: number[]) => indexes.every((i) => NAME_PART.test(parts[i] ?? ''));
  if (parts[0] === 'cni' && parts.length === 5 && names(1, 2, 3) && parts[4]) {
    return { orchestrator: 'cni', node: parts[1]!, network: parts[2]!, containerId: parts[3]!, ifname: parts[4] };
  }
  if (parts[0] === 'libnetwork' && parts[1] === 'endpoint' && parts.length === 4 && names(2, 3)) return { orchestrator: 'libnetwork', node: parts[2]!, endpointId: parts[3]! };
  if (parts[0] === 'mesos' && parts.length === 3 && names(1, 2)) return { orchestrator: 'mesos', node: parts[1]!, containerId: parts[2]! };
  return undefined;
}

/**
 * The handle earlier releases (and Calico's CNI plugin) gave a CNI attachment: ambiguous, so its
 * addresses are released only where their attributes name exactly this attachment (see
 * `ownsLegacyAllocation`).
 */
export function legacyCniHandle(network: string, containerId: string): string {
  return `${network}.${containerId}`;
}

/** Docker handles of earlier releases: `libnetwork.<uuid>`. */
export function isDockerHandle(handle: string): boolean {
  return parseHandle(handle)?.orchestrator === 'libnetwork' || /^libnetwork\.[0-9a-f-]{36}$/.test(handle);
}

/**
 * Whether an allocation under a legacy CNI handle belongs to this attachment: its attributes
 * name the network and container (and interface, when recorded); without such attributes only a
 * handle with a single "." can be read one way.
 */
export function ownsLegacyAllocation(attachment: CniAttachment, handle: string, attributes: Readonly<Record<string, string>> | null): boolean {
  if (handle !== legacyCniHandle(attachment.network, attachment.containerId)) return false;
  if (attributes?.network !== undefined || attributes?.container !== undefined) {
    return attributes.network === attachment.network && attributes.container === attachment.containerId && (attributes.interface ?? attachment.ifname) === attachment.ifname;
  }
  return handle.split('.').length === 2;
}

/** The facts recorded with each of a CNI attachment's addresses, for checks, GC and operators. */
export function allocationAttributes(workload: CniAttachment): Record<string, string> {
  return { orchestrator: 'cni', network: workload.network, container: workload.containerId, interface: workload.ifname };
}

export function endpointIdentity(workload: Workload): EndpointIdentity {
  const namespace = ENDPOINT_NAMESPACES[workload.orchestrator];
  switch (workload.orchestrator) {
    case 'cni':
      return { node: workload.node, orchestrator: 'cni', workload: workload.containerId, endpoint: workload.ifname, namespace };
    case 'libnetwork':
      return { node: workload.node, orchestrator: 'libnetwork', workload: DOCKER_WORKLOAD, endpoint: workload.endpointId, namespace };
    case 'mesos':
      return { node: workload.node, orchestrator: 'mesos', workload: workload.containerId, endpoint: 'eth0', namespace };
  }
}

/**
 * `<node>-<orchestrator>-<workload>-<endpoint>`, each part's own "-" doubled so the name splits
 * back. Unambiguous because nodes and workloads start with a letter or digit and endpoints
 * (interface names) never start with "-".
 */
export function workloadEndpointName(id: Omit<EndpointIdentity, 'namespace'>): string {
  return [id.node, id.orchestrator, id.workload, id.endpoint].map(escapeNamePart).join('-');
}

function escapeNamePart(part: string): string {
  return part.replace(/-/g, '--');
}

export function endpointNameOf(workload: Workload): string {
  return workloadEndpointName(endpointIdentity(workload));
}

/** The node an endpoint's name starts with (undefined when the name is not of our shape). */
export function nodeOfEndpointName(name: string): string | undefined {
  const match = /^((?:[^-]|--)+)-(?!-)/.exec(name);
  return match ? match[1]!.replace(/--/g, '-') : undefined;
}

/**
 * Where one host's endpoint records of one orchestrator are: a namespace and a name prefix,
 * exact (node "a" does not match node "a-b", whose names start "a--b-").
 */
export function hostEndpointRange(node: string, orchestrator: Orchestrator): { readonly namespace: string; readonly namePrefix: string } {
  return { namespace: ENDPOINT_NAMESPACES[orchestrator], namePrefix: `${escapeNamePart(node)}-${orchestrator}-` };
}

/** Every orchestrator's range of one host's endpoint records. */
export function hostEndpointRanges(node: string): { readonly namespace: string; readonly namePrefix: string }[] {
  return (Object.keys(ENDPOINT_NAMESPACES) as Orchestrator[]).map((orchestrator) => hostEndpointRange(node, orchestrator));
}

function digest(algorithm: 'sha1' | 'sha256', text: string): string {
  return createHash(algorithm).update(text).digest('hex');
}

/** The host end of the workload's veth: `cali` + 11 hex digits of the identity's SHA-1. */
export function hostVethName(workload: Workload): string {
  return `${HOST_VETH_PREFIX}${digest('sha1', identityKey(workload)).slice(0, 11)}`;
}

/** The alias a host veth carries, naming its owner (fits the kernel's 255-byte alias). */
export function linkOwnerTag(workload: Workload): string {
  return `${OWNER_TAG_PREFIX}${digest('sha256', identityKey(workload))}`;
}

/** The temporary name of a Docker endpoint's container end, until Docker moves and renames it. */
export function dockerPeerName(endpointId: string): string {
  return `tmp${digest('sha1', identityKey({ orchestrator: 'libnetwork', node: '', endpointId })).slice(0, 11)}`;
}
