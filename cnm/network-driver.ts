/**
 * Docker's NetworkDriver: endpoint records and profiles through the core, the host end of each
 * veth through the core dataplane. All state lives in etcd (the WorkloadEndpoint), so a restarted
 * daemon serves endpoints it created before; removals of what is already gone succeed.
 */
import type { Datastore, Resource } from '../shared/datastore';
import { createHostSideVeth, GATEWAY_IPV4, GATEWAY_IPV6, pinGatewayNeighbours, randomMac, unwireWorkload } from '../shared/dataplane/workload';
import { validateMac } from '../shared/dataplane/names';
import { dockerPeerName, hostEndpointRange, hostVethName, linkOwnerTag, type DockerEndpoint } from '../shared/endpoints/identity';
import { ensureNetworkProfile } from '../shared/endpoints/profile';
import { dockerOwned } from '../shared/endpoints/teardown';
import { DOCKER_NETWORK_ANNOTATION, NETNS_ANNOTATION, buildWorkloadEndpoint, deleteEndpointOf, endpointOf, isEndpointOf } from '../shared/endpoints/workload-endpoint';
import { messageOf } from '../shared/errors';
import type { Ipam } from '../shared/ipam/ipam';
import type { Logger } from '../shared/log';
import { formatAddress, parseAddress, type IpAddress } from '../shared/net';
import type { DockerApi } from './docker-api';
import { ContainerLabels } from './container-labels';
import { workloadMtu } from '../shared/routing/workload-mtu';
import { DriverRequestError, field, mapField } from './errors';
import type { Handler } from './server';
import { NO_GATEWAY_V4, ROUTE_CONNECTED, GLOBAL_ADDRESS_SPACE, LOCAL_ADDRESS_SPACE, type CreateEndpointResponse, type JoinResponse } from './protocol';

/** Where Docker put the endpoint's container: kept so a restarted daemon can finish its wiring. */
const SANDBOX_ANNOTATION = NETNS_ANNOTATION;
/** Options Docker always sends, which say nothing the user chose. */
const KNOWN_OPTIONS = new Set(['com.docker.network.enable_ipv6']);

export interface NetworkDriverSettings {
  readonly node: string;
  readonly scope: 'global' | 'local';
  /** The veths' MTU; undefined: the node's (shared/routing/workload-mtu.ts), from `mtuFile`. */
  readonly mtu: number | undefined;
  readonly mtuFile: string;
  /** Name prefix of the interface inside the container (Docker appends a number). */
  readonly containerIfPrefix: string;
  /** Containers' `org.projectcalico.label.*` labels become their endpoints' (container-labels.ts). */
  readonly labelEndpoints: boolean;
}

export class NetworkDriver {
  private readonly labels: ContainerLabels | undefined;

  constructor(
    private readonly datastore: () => Promise<{ ds: Datastore; ipam: Ipam }>,
    private readonly docker: DockerApi,
    private readonly settings: NetworkDriverSettings,
    private readonly log: Logger,
  ) {
    this.labels = settings.labelEndpoints ? new ContainerLabels(async () => (await datastore()).ds, docker, log) : undefined;
  }

  /** The calls of Docker's NetworkDriver API, by name, as the driver server routes them. */
  handlers(): Readonly<Record<string, Handler>> {
    return {
      'NetworkDriver.GetCapabilities': () => this.capabilities(),
      'NetworkDriver.CreateNetwork': (b) => this.createNetwork(b),
      'NetworkDriver.DeleteNetwork': (b) => this.deleteNetwork(b),
      'NetworkDriver.CreateEndpoint': (b) => this.createEndpoint(b),
      'NetworkDriver.DeleteEndpoint': (b) => this.deleteEndpoint(b),
      'NetworkDriver.EndpointOperInfo': () => this.endpointOperInfo(),
      'NetworkDriver.Join': (b) => this.join(b),
      'NetworkDriver.Leave': (b) => this.leave(b),
      'NetworkDriver.DiscoverNew': () => ({}),
      'NetworkDriver.DiscoverDelete': () => ({}),
      'NetworkDriver.ProgramExternalConnectivity': () => ({}),
      'NetworkDriver.RevokeExternalConnectivity': () => ({}),
      'NetworkDriver.AllocateNetwork': () => ({ Options: {} }),
      'NetworkDriver.FreeNetwork': () => ({}),
    };
  }

  capabilities() {
    return { Scope: this.settings.scope, ConnectivityScope: this.settings.scope };
  }

  createNetwork(body: Record<string, unknown>): Record<string, never> {
    const networkId = field(body, 'NetworkID', true);
    rejectOptions(mapField(body, 'Options'));
    for (const [key, family] of [['IPv4Data', 'IPv4'], ['IPv6Data', 'IPv6']] as const) {
      const data = body[key];
      if (data === undefined || data === null) continue;
      if (!Array.isArray(data)) throw new DriverRequestError(`${key} must be a list`);
      for (const entry of data as Record<string, unknown>[]) {
        const space = entry?.AddressSpace;
        const gateway = entry?.Gateway;
        const ours = space === GLOBAL_ADDRESS_SPACE || space === LOCAL_ADDRESS_SPACE || gateway === NO_GATEWAY_V4;
        if (!ours) {
          throw new DriverRequestError(`the network's ${family} addresses come from another IPAM driver: create it with --ipam-driver calico-ipam`);
        }
        if (typeof gateway === 'string' && gateway !== NO_GATEWAY_V4 && gateway !== '::/0') {
          throw new DriverRequestError('Calico networks have no gateway address: leave out --gateway');
        }
      }
    }
    this.log.info('network created', { network: networkId });
    void this.createProfileOnceNamed(networkId);
    return {};
  }

  /**
   * The driver API gives a new network's ID, not its name, and Docker stores the network only after
   * we answer: learn the name from Docker's API shortly after, then create the profile. CreateEndpoint
   * ensures it as well, so a profile missed here (Docker slow, etcd down) is never missing for long.
   */
  private async createProfileOnceNamed(networkId: string): Promise<void> {
    for (let attempt = 0; attempt < 40; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      try {
        const name = await this.docker.networkName(networkId);
        const { ds } = await this.datastore();
        await ensureNetworkProfile(ds, name);
        this.log.info('profile ready', { network: name });
        return;
      } catch {
        // not stored by Docker yet, or the datastore is away: try again shortly
      }
    }
    this.log.warning('could not create the profile of a new network; its first endpoint will', { network: networkId });
  }

  deleteNetwork(body: Record<string, unknown>): Record<string, never> {
    // The profile stays: other hosts, and CNI tasks on the network of the same name, may use it.
    this.log.info('network deleted', { network: field(body, 'NetworkID', true) });
    return {};
  }

  private workload(endpointId: string): DockerEndpoint {
    return { orchestrator: 'libnetwork', node: this.settings.node, endpointId };
  }

  async createEndpoint(body: Record<string, unknown>): Promise<CreateEndpointResponse> {
    const networkId = field(body, 'NetworkID', true);
    const endpointId = endpointIdOf(body);
    const iface = mapField(body, 'Interface');
    const addresses: IpAddress[] = [];
    for (const key of ['Address', 'AddressIPv6']) {
      const text = field(iface, key);
      if (!text) continue;
      try {
        addresses.push(parseAddress(text.split('/')[0]!, `Interface.${key}`));
      } catch (err) {
        throw new DriverRequestError(messageOf(err));
      }
    }
    if (addresses.length === 0) throw new DriverRequestError('the endpoint has no address: the network must use --ipam-driver calico-ipam');
    const givenMac = field(iface, 'MacAddress');
    const mac = givenMac ? validateMac(givenMac, 'Interface.MacAddress') : randomMac();

    const { ds, ipam } = await this.datastore();
    const network = await this.docker.networkName(networkId);
    await ensureNetworkProfile(ds, network);
    // Only an address this host's IPAM driver handed out, and to no other endpoint yet.
    const owned = dockerOwned(this.settings.node);
    const free = (a: Parameters<typeof owned>[0]) => owned(a) && [undefined, endpointId].includes(a.secondary?.endpoint);
    for (const address of addresses) {
      if (!(await ipam.annotate(address, { endpoint: endpointId, network: networkId }, free))) {
        throw new DriverRequestError(`${formatAddress(address)} was not allocated by Calico IPAM on ${this.settings.node} for this endpoint: create the network with --ipam-driver calico-ipam`);
      }
    }
    const workload = this.workload(endpointId);
    const endpoint = buildWorkloadEndpoint(workload, {
      containerID: endpointId,
      addresses,
      profiles: [network],
      interfaceName: hostVethName(workload),
      mac,
      annotations: { [DOCKER_NETWORK_ANNOTATION]: networkId },
    });
    // The record is written last: nothing before it needs undoing when it fails.
    const existing = await ds.resources.get('WorkloadEndpoint', endpoint.metadata.name, endpoint.metadata.namespace);
    if (existing && !isEndpointOf(existing, workload)) throw new DriverRequestError(`endpoint record ${endpoint.metadata.name} belongs to another workload`);
    if (existing) await ds.resources.update({ ...endpoint, metadata: { ...existing.metadata, ...endpoint.metadata, resourceVersion: existing.metadata.resourceVersion } });
    else await ds.resources.create(endpoint);
    this.log.info('endpoint created', { endpoint: endpointId, network, addresses: addresses.map(formatAddress).join(',') });
    return { Interface: givenMac ? {} : { MacAddress: mac } };
  }

  async deleteEndpoint(body: Record<string, unknown>): Promise<Record<string, never>> {
    const endpointId = endpointIdOf(body);
    const { ds } = await this.datastore();
    const deleted = await deleteEndpointOf(ds, this.workload(endpointId));
    this.log.info(`endpoint ${deleted === 'deleted' ? 'deleted' : deleted === 'absent' ? 'was already gone' : 'record belongs to another workload: left alone'}`, { endpoint: endpointId });
    return {};
  }

  endpointOperInfo(): { Value: Record<string, never> } {
    return { Value: {} };
  }

  /** Stops what runs in the background (reading containers' labels). */
  stop(): void {
    this.labels?.stop();
  }

  async join(body: Record<string, unknown>): Promise<JoinResponse> {
    const networkId = field(body, 'NetworkID', true);
    const endpointId = endpointIdOf(body);
    const sandbox = field(body, 'SandboxKey');
    const endpoint = await this.endpoint(endpointId);
    const addresses = endpoint.spec.ipNetworks.map((n) => parseAddress(n.split('/')[0]!, 'ipNetworks'));
    const mac = endpoint.spec.mac!;
    const workload = this.workload(endpointId);
    const peerIf = dockerPeerName(endpointId);
    await createHostSideVeth({ hostIf: hostVethName(workload), peerIf, addresses, containerMac: mac, ownerTag: linkOwnerTag(workload), mtu: this.settings.mtu ?? workloadMtu(this.settings.mtuFile) });
    const v4 = addresses.some((a) => a.version === 4);
    const v6 = addresses.some((a) => a.version === 6);
    if (sandbox) {
      const { ds } = await this.datastore();
      const annotations = { ...endpoint.metadata.annotations, [SANDBOX_ANNOTATION]: sandbox };
      await ds.resources.update({ ...endpoint, metadata: { ...endpoint.metadata, annotations } });
      // Docker moves the peer in after we answer; pin the gateway neighbours once it is there.
      void this.pin(endpointId, sandbox, mac, { v4, v6 });
    }
    // The container shows in Docker once it has started: its labels follow.
    this.labels?.apply(networkId, workload);
    this.log.info('endpoint joined', { endpoint: endpointId, hostIf: endpoint.spec.interfaceName });
    return {
      InterfaceName: { SrcName: peerIf, DstPrefix: this.settings.containerIfPrefix },
      ...(v4 ? { Gateway: GATEWAY_IPV4 } : {}),
      ...(v6 ? { GatewayIPv6: GATEWAY_IPV6 } : {}),
      StaticRoutes: [
        ...(v4 ? [{ Destination: `${GATEWAY_IPV4}/32`, RouteType: ROUTE_CONNECTED, NextHop: '' }] : []),
        ...(v6 ? [{ Destination: `${GATEWAY_IPV6}/128`, RouteType: ROUTE_CONNECTED, NextHop: '' }] : []),
      ],
      DisableGatewayService: true,
    };
  }

  private async pin(endpointId: string, sandbox: string, mac: string, families: { v4: boolean; v6: boolean }): Promise<void> {
    try {
      const pinned = await pinGatewayNeighbours(sandbox, mac, families);
      if (pinned) this.log.debug('gateway neighbours pinned', { endpoint: endpointId });
      else this.log.warning('the container interface did not appear; gateway neighbours not pinned', { endpoint: endpointId });
    } catch (err) {
      this.log.warning('pinning gateway neighbours failed', { endpoint: endpointId, error: messageOf(err) });
    }
  }

  /**
   * After a start: a crash between a Join and its container coming up left that container without
   * its gateway neighbours (and its labels). Pin them for every endpoint of this host whose
   * container still exists.
   */
  async reconcile(): Promise<void> {
    const { ds } = await this.datastore();
    const endpoints: Resource<'WorkloadEndpoint'>[] = [];
    for await (const page of ds.resources.pages('WorkloadEndpoint', { ...hostEndpointRange(this.settings.node, 'libnetwork'), skipMalformed: true })) {
      endpoints.push(...page.filter((e) => e.spec.node === this.settings.node));
    }
    await Promise.all(endpoints.map(async (endpoint) => {
      const sandbox = endpoint.metadata.annotations?.[SANDBOX_ANNOTATION];
      if (!sandbox || !endpoint.spec.mac) return;
      // Labels a crash kept from being written (Docker away meanwhile) are read again.
      const network = endpoint.metadata.annotations?.[DOCKER_NETWORK_ANNOTATION];
      if (network) this.labels?.apply(network, this.workload(endpoint.spec.endpoint));
      const families = { v4: endpoint.spec.ipNetworks.some((n) => !n.includes(':')), v6: endpoint.spec.ipNetworks.some((n) => n.includes(':')) };
      await this.pin(endpoint.spec.endpoint, sandbox, endpoint.spec.mac, families);
    }));
  }

  async leave(body: Record<string, unknown>): Promise<Record<string, never>> {
    const endpointId = endpointIdOf(body);
    const workload = this.workload(endpointId);
    const removal = await unwireWorkload({ hostIf: hostVethName(workload), ownerTag: linkOwnerTag(workload) });
    this.log.info(removal === 'not ours' ? 'endpoint left; its host interface name belongs to another workload and was left alone' : 'endpoint left', { endpoint: endpointId });
    return {};
  }

  private async endpoint(endpointId: string): Promise<Resource<'WorkloadEndpoint'>> {
    const { ds } = await this.datastore();
    const endpoint = await endpointOf(ds, this.workload(endpointId));
    if (!endpoint || !endpoint.spec.mac) {
      throw new DriverRequestError(`endpoint ${endpointId} is unknown to Calico on ${this.settings.node}: it was not created by this driver (or its record was deleted)`);
    }
    return endpoint;
  }
}

function endpointIdOf(body: Record<string, unknown>): string {
  const id = field(body, 'EndpointID', true);
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(id)) throw new DriverRequestError(`EndpointID "${id}" is not a Docker endpoint ID`);
  return id;
}

/** Refuses every option the user chose (`--opt`, `--internal`, ...), naming them. */
function rejectOptions(options: Record<string, unknown>): void {
  const chosen: string[] = [];
  for (const [key, value] of Object.entries(options)) {
    if (KNOWN_OPTIONS.has(key)) continue;
    if (value === false || value === '' || value === null) continue;
    if (typeof value === 'object' && !Array.isArray(value)) {
      const inner = Object.keys(value as object);
      if (inner.length > 0) chosen.push(...inner.map((k) => `--opt ${k}`));
      continue;
    }
    chosen.push(value === true ? `--${key.replace(/^com\.docker\.network\./, '')}` : `${key}=${String(value)}`);
  }
  if (chosen.length > 0) throw new DriverRequestError(`the Calico driver does not support ${chosen.join(', ')}: create the network without ${chosen.length > 1 ? 'them' : 'it'}`);
}
