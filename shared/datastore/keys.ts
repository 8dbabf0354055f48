/**
 * The Calico v3 etcd key layout (see ../shared/docs/datastore.md), under a configurable prefix.
 * Block CIDRs appear in keys with "/" replaced by "-".
 */
import { formatCidr, parseCidr, type Cidr } from '../net/cidr';

export const RESOURCE_PLURALS = {
  IPPool: 'ippools',
  WorkloadEndpoint: 'workloadendpoints',
  Profile: 'profiles',
  Node: 'nodes',
  ClusterInformation: 'clusterinformations',
  GlobalNetworkPolicy: 'globalnetworkpolicies',
  NetworkPolicy: 'networkpolicies',
  FelixConfiguration: 'felixconfigurations',
  BGPConfiguration: 'bgpconfigurations',
  BGPPeer: 'bgppeers',
  CalicoNodeStatus: 'caliconodestatuses',
} as const;

export type ResourceKind = keyof typeof RESOURCE_PLURALS;

const NAMESPACED: ReadonlySet<ResourceKind> = new Set(['WorkloadEndpoint', 'NetworkPolicy']);

export function isNamespaced(kind: ResourceKind): boolean {
  return NAMESPACED.has(kind);
}

export class KeyLayout {
  private readonly resources: string;
  private readonly ipam: string;

  constructor(readonly prefix: string) {
    this.resources = `${prefix}/resources/v3/projectcalico.org`;
    this.ipam = `${prefix}/ipam/v2`;
  }

  resource(kind: ResourceKind, name: string, namespace?: string): string {
    return `${this.resourcePrefix(kind, namespace)}${name}`;
  }

  /** Where every resource lives (one watch follows them all), ending in "/". */
  get resourcesRoot(): string {
    return `${this.resources}/`;
  }

  /** The kind, namespace and name a resource key names, or undefined for a key of another shape. */
  resourceOf(key: string): { kind: ResourceKind; namespace?: string; name: string } | undefined {
    if (!key.startsWith(this.resourcesRoot)) return undefined;
    const [plural, ...rest] = key.slice(this.resourcesRoot.length).split('/');
    const kind = (Object.keys(RESOURCE_PLURALS) as ResourceKind[]).find((k) => RESOURCE_PLURALS[k] === plural);
    if (!kind) return undefined;
    const namespaced = isNamespaced(kind);
    if (rest.length !== (namespaced ? 2 : 1) || rest.some((part) => part === '')) return undefined;
    return namespaced ? { kind, namespace: rest[0]!, name: rest[1]! } : { kind, name: rest[0]! };
  }

  /** All resources of a kind (in one namespace, if given), ending in "/". */
  resourcePrefix(kind: ResourceKind, namespace?: string): string {
    const base = `${this.resources}/${RESOURCE_PLURALS[kind]}/`;
    return namespace === undefined ? base : `${base}${namespace}/`;
  }

  block(cidr: Cidr): string {
    return `${this.blockPrefix(cidr.version)}${cidrKeyPart(cidr)}`;
  }

  blockPrefix(version: 4 | 6): string {
    return `${this.ipam}/assignment/ipv${version}/block/`;
  }

  /** The block CIDR a block key names, or undefined for a key of some other shape. */
  blockCidrOf(key: string): Cidr | undefined {
    const match = /\/assignment\/ipv[46]\/block\/([^/]+)$/.exec(key);
    if (!match) return undefined;
    try {
      return parseCidr(match[1]!.replace(/-(\d+)$/, '/$1'));
    } catch {
      return undefined;
    }
  }

  affinity(host: string, cidr: Cidr): string {
    return `${this.hostAffinityPrefix(host, cidr.version)}${cidrKeyPart(cidr)}`;
  }

  hostAffinityPrefix(host: string, version: 4 | 6): string {
    return `${this.ipam}/host/${host}/ipv${version}/block/`;
  }

  /** Every host's affinities, ending in "/". */
  affinitiesPrefix(): string {
    return `${this.ipam}/host/`;
  }

  /** The (host, block) an affinity key names. */
  affinityOf(key: string): { host: string; cidr: Cidr } | undefined {
    const match = /\/host\/([^/]+)\/ipv[46]\/block\/([^/]+)$/.exec(key);
    const cidr = match ? this.blockCidrOf(`/assignment/ipv4/block/${match[2]}`) : undefined;
    return match && cidr ? { host: match[1]!, cidr } : undefined;
  }

  handle(id: string): string {
    return `${this.handlePrefix()}${id}`;
  }

  handlePrefix(): string {
    return `${this.ipam}/handle/`;
  }

  ipamConfig(): string {
    return `${this.ipam}/config`;
  }

  /** Held (under a lease) by the live node daemon of a node: one daemon per node name. Ours, not Calico's. */
  nodeDaemon(node: string): string {
    return `${this.prefix}/daemons/v1/host/${node}`;
  }
}

function cidrKeyPart(cidr: Cidr): string {
  return formatCidr(cidr).replace('/', '-');
}
