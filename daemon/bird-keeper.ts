/**
 * The `bird` backend's half of the route keeper: from the cluster view (nodes, pools, this host's
 * blocks, the BGP resources), BIRD's configuration, checked and put in place, and
 * BIRD kept running on it. A BGPPeer or BGPConfiguration that does not check out is logged once
 * and skipped (the configuration then counts as Calico's defaults); a configuration BIRD refuses
 * is logged, and the last good one stays in force.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Resource } from '../shared/datastore';
import { BirdError, BirdProcess, bgpSessions, installBirdConfig, type BirdPaths } from '../shared/dataplane/bird';
import { messageOf } from '../shared/errors';
import type { PoolEncapsulation } from '../shared/ipam/pool';
import type { Logger } from '../shared/log';
import { formatAddress, parseAddress, type Cidr } from '../shared/net';
import { bgpPlan, type BgpNode, type Peering } from '../shared/routing/bgp-peers';
import type { PeerStatus } from '../shared/routing/status';
import { DEFAULT_BGP_SETTINGS, validateBgpConfiguration, validateBgpPeer, parseAsNumber, type BgpPeerRule } from '../shared/routing/bgp-resources';
import { renderBirdConfig } from '../shared/routing/bird-config';

export interface BirdInputs {
  readonly nodes: readonly Resource<'Node'>[];
  readonly pools: readonly PoolEncapsulation[];
  readonly ownBlocks: readonly Cidr[];
  /** The cluster's BGPConfiguration "default", if any, and every BGPPeer. */
  readonly configuration: Resource<'BGPConfiguration'> | undefined;
  readonly peers: readonly Resource<'BGPPeer'>[];
}

export class BirdKeeper {
  private readonly paths: BirdPaths;
  private readonly process: BirdProcess;
  /** The configuration in force (installed and accepted). */
  private installed: string | undefined;
  /** Malformed resources already reported (by key and revision), so each is logged once. */
  private readonly reported = new Set<string>();
  /** The last configuration BIRD refused, reported once. */
  private refused: string | undefined;
  /** The peerings of the configuration in force, by BIRD protocol name. */
  private peerings = new Map<string, Peering>();

  constructor(
    private readonly node: string,
    dir: string,
    private readonly log: Logger,
  ) {
    mkdirSync(dir, { recursive: true });
    this.paths = { config: join(dir, 'bird.conf'), socket: join(dir, 'bird.ctl'), pidFile: join(dir, 'bird.pid') };
    const birdLog = log.with({ bird: 'bird' });
    this.process = new BirdProcess(this.paths, {
      line: (text) => birdLog.info(text),
      exited: (detail) => birdLog.error('BIRD stopped; starting it again', { detail }),
    });
  }

  /** Renders the configuration; BIRD hears of it only when it changed. */
  async sync(inputs: BirdInputs): Promise<void> {
    const settings = inputs.configuration ? this.checked(inputs.configuration, validateBgpConfiguration) ?? DEFAULT_BGP_SETTINGS : DEFAULT_BGP_SETTINGS;
    const rules = inputs.peers.map((peer) => this.checked(peer, validateBgpPeer)).filter((r): r is BgpPeerRule => r !== undefined);
    const plan = bgpPlan(this.node, inputs.nodes.map((n) => this.bgpNode(n)), rules, settings);
    if (!plan) {
      this.once('no-address', () => this.log.warning('BGP waits: this node has no IPv4 address in its Node record (BIRD\'s router ID)'));
      return;
    }
    const text = renderBirdConfig({ node: this.node, plan, ownBlocks: inputs.ownBlocks, pools: inputs.pools, logSeverity: settings.logSeverityScreen });
    let changed = false;
    if (text !== this.installed) {
      try {
        await installBirdConfig(this.paths, text);
        this.installed = text;
        this.peerings = new Map(plan.peerings.map((p) => [p.protocol, p]));
        changed = true;
      } catch (err) {
        if (!(err instanceof BirdError)) throw err;
        // The last good configuration stays in force.
        if (this.refused !== text) this.log.error(this.installed ? 'BIRD configuration refused; the last good one stays' : 'BIRD cannot start', { error: err.message });
        this.refused = text;
        if (this.installed === undefined) return;
      }
    }
    const started = await this.process.ensureRunning();
    if (changed && !started) await this.process.configure();
    if (changed) this.log.info('BIRD configured', { peers: plan.peerings.length, blocks: inputs.ownBlocks.length });
  }

  /** Each peer's session as BIRD reports it now; undefined when BIRD does not answer. */
  async peers(): Promise<PeerStatus[] | undefined> {
    const sessions = await bgpSessions(this.paths.socket).catch(() => undefined);
    return sessions?.flatMap((session) => {
      const peering = this.peerings.get(session.protocol);
      return peering ? [{ peerIP: formatAddress(peering.address), type: peering.type, state: session.state, since: session.since, info: session.info }] : [];
    });
  }

  async stop(): Promise<void> {
    await this.process.stop();
  }

  /** A node as BGP needs it; an AS number or cluster ID that does not check out is reported and left out. */
  private bgpNode(node: Resource<'Node'>): BgpNode {
    const bgp = node.spec.bgp ?? {};
    const field = <T>(name: string, value: unknown, check: (v: unknown) => T) =>
      value === undefined ? undefined : this.orSkip(`${node.metadata.name} ${name} ${JSON.stringify(value)}`, `Node ${node.metadata.name}: spec.bgp.${name} skipped`, {}, () => check(value));
    const asNumber = field('asNumber', bgp.asNumber, (v) => parseAsNumber(v, 'spec.bgp.asNumber'));
    const clusterId = field('routeReflectorClusterID', bgp.routeReflectorClusterID, (v) => {
      if (typeof v !== 'string' || parseAddress(v).version !== 4) throw new Error(`${JSON.stringify(v)} is not an IPv4-formatted cluster ID`);
      return v;
    });
    return {
      name: node.metadata.name,
      labels: node.metadata.labels ?? {},
      ipv4Address: bgp.ipv4Address,
      ipv6Address: bgp.ipv6Address,
      // Without one of its own, bgpPlan gives it the cluster's.
      ...(asNumber !== undefined ? { asNumber } : {}),
      ...(clusterId ? { routeReflectorClusterId: clusterId } : {}),
    };
  }

  /** A resource's check; one it refuses is logged once per revision and skipped. */
  private checked<K extends 'BGPConfiguration' | 'BGPPeer', T>(resource: Resource<K>, check: (resource: Resource<K>) => T): T | undefined {
    const name = `${resource.kind} ${resource.metadata.name}`;
    return this.orSkip(`${name}@${resource.metadata.resourceVersion}`, 'BGP resource skipped: it does not check out', { resource: name }, () => check(resource));
  }

  /** What `check` gives; what it refuses is logged once (by `seen`) and gives undefined. */
  private orSkip<T>(seen: string, message: string, fields: Record<string, string>, check: () => T): T | undefined {
    try {
      return check();
    } catch (err) {
      this.once(seen, () => this.log.error(message, { ...fields, error: messageOf(err) }));
      return undefined;
    }
  }

  private once(key: string, report: () => void): void {
    if (this.reported.has(key)) return;
    this.reported.add(key);
    report();
  }
}
