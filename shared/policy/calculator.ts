/**
 * From datastore records to the ruleset this host needs, kept up to date one change at a time
 * (Felix's calculation graph, in small): the work of a change is proportional to what it touches,
 * not to the cluster. Pure: records in, a Ruleset and the names it touched out.
 *
 * - Every endpoint in the cluster is indexed by labels (its own, over its profiles' labelsToApply),
 *   because rule selectors match remote endpoints too; only this host's endpoints get chains.
 * - A policy or profile has chains only while a local endpoint uses it, and a selector or nets
 *   list has sets only while such a chain refers to it (reference counts).
 * - Endpoints that share the same policies and profiles, in order, share one chain per direction.
 */
import { createHash } from 'node:crypto';
import { Interner } from './interner';
import { cidrsOverlap, formatCidr, parseCidr, type Cidr, type IpVersion } from '../net';
import { ADDRESS_BITS, formatAddress } from '../net/address';
import { ENCAPSULATIONS } from '../routing/encapsulations';
import { DEFAULT_FELIX_SETTINGS, NAMESPACE_LABEL, comparePolicies, type Direction, type FelixSettings, type Policy, type Profile } from './model';
import { CLEAR_MARK, MARK, hex, netsKey, ruleLines, type SetNamer } from './nft-rules';
import { HOST_ACTION_CHAIN, Ruleset, Touched, WORKLOAD_ENCAP_CHAIN, type FixedSetName } from './ruleset';
import { matches, printSelector, type Labels, type Selector } from './selector';

/** A WorkloadEndpoint as policy sees it. */
export interface EndpointRecord {
  readonly node: string;
  readonly namespace: string;
  /** The host end of its veth. */
  readonly interfaceName: string;
  readonly ipv4: readonly string[];
  readonly ipv6: readonly string[];
  readonly labels: Labels;
  readonly profiles: readonly string[];
  /** allowSpoofedSourcePrefixes: sources it may send from besides its own addresses (honoured only with workloadSourceSpoofing: Any). */
  readonly allowedSources?: readonly Cidr[];
}

/** A service workloads may never reach (the datastore, the daemon's metrics); no address: on every address of this host. */
export interface ProtectedService {
  readonly address?: string;
  readonly version?: IpVersion;
  readonly protocol: 'tcp' | 'udp';
  readonly port: number;
}

/** A known host's addresses (its Node's), the only sources tunnel packets are taken from. */
export interface HostRecord {
  readonly ipv4?: string;
  readonly ipv6?: string;
}

const DIRECTIONS: readonly Direction[] = ['ingress', 'egress'];
const digest = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 16);

interface IndexedEndpoint {
  readonly record: EndpointRecord;
  readonly labels: Labels;
}

interface SelectorSet {
  readonly selector: Selector;
  readonly names: Record<IpVersion, string>;
  refs: number;
  readonly members: Set<string>;
  /** How many member endpoints hold each address (two records may briefly share one). */
  readonly counts: Map<string, number>;
}

interface LocalEndpoint {
  readonly interfaceName: string;
  /** Its elements in wl_src4 and wl_src6, and any allowed prefixes' in wl_pfx4 and wl_pfx6. */
  sources: readonly (readonly [FixedSetName, string])[];
  readonly applies: Record<Direction, Set<string>>;
  readonly chains: Partial<Record<Direction, string>>;
}

/** The policy or profile (and direction) a rule chain is for. */
interface RuleChainOwner {
  readonly kind: 'policy' | 'profile';
  readonly id: string;
  readonly direction: Direction;
}

/** A chain of a policy or profile, or an endpoint chain, with what it holds on to. */
interface HeldChain {
  refs: number;
  readonly sets: string[];
  readonly chains: string[];
}

export class PolicyCalculator {
  readonly ruleset = new Ruleset();
  private touched = new Touched();
  private readonly endpoints = new Map<string, IndexedEndpoint>();
  private readonly endpointsByProfile = new Map<string, Set<string>>();
  private readonly local = new Map<string, LocalEndpoint>();
  private readonly policies = new Map<string, Policy>();
  private readonly profiles = new Map<string, Profile>();
  private readonly selectorSets = new Map<string, SelectorSet>();
  private readonly netsSets = new Map<string, number>();
  private readonly held = new Map<string, HeldChain>();
  private felix = DEFAULT_FELIX_SETTINGS;
  private readonly hosts = new Map<string, HostRecord>();
  private protectedServices: readonly ProtectedService[] = [];
  /** How many holders each element of a fixed set has (two records may briefly share one). */
  private readonly fixedCounts = new Map<string, number>();

  /** Shared copies of what many endpoints hold alike (records.ts interns with it too). */
  readonly interner = new Interner();
  /**
   * Each endpoint's labels with its profiles' and its namespace's, by its own (interned) label
   * set, profile list and namespace: endpoints alike share one, worked out once. Forgotten when a
   * profile's labels change.
   */
  private mergedLabels = new WeakMap<Labels, Map<readonly string[], Map<string, Labels>>>();

  constructor(private readonly node: string) {
    this.setChain(HOST_ACTION_CHAIN, hostActionRules(this.felix));
    this.setChain(WORKLOAD_ENCAP_CHAIN, encapsulationRules(this.felix));
  }

  /** The names changed since the last call. */
  takeTouched(): Touched {
    const touched = this.touched;
    this.touched = new Touched();
    return touched;
  }

  get localEndpointCount(): number {
    return this.local.size;
  }

  /** The versions in force, by the keys (and profile names) they were set under. */
  endpointRecord(key: string): EndpointRecord | undefined {
    return this.endpoints.get(key)?.record;
  }

  policy(key: string): Policy | undefined {
    return this.policies.get(key);
  }

  profile(name: string): Profile | undefined {
    return this.profiles.get(name);
  }

  host(key: string): HostRecord | undefined {
    return this.hosts.get(key);
  }

  /** The local interfaces that may send from prefixes besides their own addresses (the kernel's reverse-path check must let them). */
  spoofingInterfaces(): Set<string> {
    const names = new Set<string>();
    for (const local of this.local.values()) if (local.sources.some(([, element]) => element.includes('/'))) names.add(local.interfaceName);
    return names;
  }

  get felixSettings(): FelixSettings {
    return this.felix;
  }

  setFelixSettings(settings: FelixSettings): void {
    const before = this.felix;
    this.felix = settings;
    this.setChain(HOST_ACTION_CHAIN, hostActionRules(settings), true);
    this.setChain(WORKLOAD_ENCAP_CHAIN, encapsulationRules(settings), true);
    if (before.workloadSourceSpoofing !== settings.workloadSourceSpoofing) {
      for (const [key, local] of this.local) this.setSources(local, this.endpoints.get(key)!.record);
    }
    if (before.allowDatastoreAccessFromWorkloads !== settings.allowDatastoreAccessFromWorkloads) this.setProtectedServices(this.protectedServices);
  }

  /** What workloads may never reach, unless FelixConfiguration allowDatastoreAccessFromWorkloads. */
  setProtectedServices(services: readonly ProtectedService[]): void {
    this.protectedServices = services;
    const wanted = this.felix.allowDatastoreAccessFromWorkloads ? [] : services.map(protectedElement);
    for (const name of ['protected4', 'protected6', 'protected_local'] as const) {
      const elements = new Set(wanted.filter(([set]) => set === name).map(([, element]) => element));
      const set = this.ruleset.sets.get(name)!;
      if (set.elements.size === elements.size && [...elements].every((e) => set.elements.has(e))) continue;
      this.ruleset.sets.set(name, { declaration: set.declaration, elements });
      this.touched.sets.add(name);
    }
  }

  /** A host's Node record (undefined: it is gone). */
  setHost(key: string, host: HostRecord | undefined): void {
    const before = this.hosts.get(key);
    if (before?.ipv4 === host?.ipv4 && before?.ipv6 === host?.ipv6) return;
    if (host) this.hosts.set(key, host);
    else this.hosts.delete(key);
    if (before?.ipv4) this.countFixed('hosts4', before.ipv4, -1);
    if (before?.ipv6) this.countFixed('hosts6', before.ipv6, -1);
    if (host?.ipv4) this.countFixed('hosts4', host.ipv4, +1);
    if (host?.ipv6) this.countFixed('hosts6', host.ipv6, +1);
  }

  setEndpoint(key: string, record: EndpointRecord | undefined): void {
    const before = this.endpoints.get(key);
    for (const profile of before?.record.profiles ?? []) this.endpointsByProfile.get(profile)?.delete(key);
    const after = record ? { record, labels: this.labelsOf(record) } : undefined;
    if (after) {
      this.endpoints.set(key, after);
      for (const profile of record!.profiles) {
        const keys = this.endpointsByProfile.get(profile) ?? new Set();
        keys.add(key);
        this.endpointsByProfile.set(profile, keys);
      }
    } else {
      this.endpoints.delete(key);
    }
    for (const set of this.selectorSets.values()) this.updateMembership(set, key, before, after);
    if (before?.record.node === this.node || after?.record.node === this.node) this.updateLocal(key, after?.record.node === this.node ? after : undefined);
  }

  setPolicy(id: string, policy: Policy | undefined): void {
    const before = this.policies.get(id);
    if (policy) this.policies.set(id, policy);
    else this.policies.delete(id);
    for (const direction of DIRECTIONS) {
      const name = this.policyChainName(id, direction);
      if (this.held.has(name)) this.fillChain(name, this.policyRules(id, direction));
    }
    // Which local endpoints it applies to, and where it sorts among their policies.
    const reorder = before?.order !== policy?.order;
    for (const [key, local] of this.local) {
      const labels = this.endpoints.get(key)!.labels;
      let changed = false;
      for (const direction of DIRECTIONS) {
        const applies = policy !== undefined && appliesTo(policy, direction, labels);
        const had = local.applies[direction].has(id);
        if (applies && !had) local.applies[direction].add(id);
        if (!applies && had) local.applies[direction].delete(id);
        changed ||= applies !== had || (applies && reorder);
      }
      if (changed) this.placeEndpoint(key, local);
    }
  }

  setProfile(name: string, profile: Profile | undefined): void {
    const before = this.profiles.get(name);
    if (profile) this.profiles.set(name, profile);
    else this.profiles.delete(name);
    for (const direction of DIRECTIONS) {
      const chain = this.profileChainName(name, direction);
      if (this.held.has(chain)) this.fillChain(chain, profile?.[direction]);
    }
    const members = [...(this.endpointsByProfile.get(name) ?? [])];
    // The labels it applies changed: its endpoints move in or out of selectors.
    if (JSON.stringify(before?.labelsToApply ?? {}) !== JSON.stringify(profile?.labelsToApply ?? {})) {
      this.mergedLabels = new WeakMap();
      for (const key of members) this.setEndpoint(key, this.endpoints.get(key)!.record);
    } else if ((before === undefined) !== (profile === undefined) || before?.quarantined !== profile?.quarantined) {
      // It came or went (or stands in for one unreadable): its local endpoints' chains list it, or first.
      for (const key of members) {
        const local = this.local.get(key);
        if (local) this.placeEndpoint(key, local);
      }
    }
  }

  /** Own labels over the profiles' labelsToApply (Calico's precedence), and the namespace label. */
  private labelsOf(record: EndpointRecord): Labels {
    let byProfiles = this.mergedLabels.get(record.labels);
    if (!byProfiles) this.mergedLabels.set(record.labels, (byProfiles = new Map()));
    let byNamespace = byProfiles.get(record.profiles);
    if (!byNamespace) byProfiles.set(record.profiles, (byNamespace = new Map()));
    const known = byNamespace.get(record.namespace);
    if (known) return known;
    // Spread, not assigned: a "__proto__" label stays a label.
    let labels: Labels = {};
    for (const profile of record.profiles) labels = { ...labels, ...this.profiles.get(profile)?.labelsToApply };
    const merged = this.interner.labels({ ...labels, ...record.labels, [NAMESPACE_LABEL]: record.namespace });
    byNamespace.set(record.namespace, merged);
    return merged;
  }

  private updateLocal(key: string, endpoint: IndexedEndpoint | undefined): void {
    const before = this.local.get(key);
    if (before && (!endpoint || endpoint.record.interfaceName !== before.interfaceName)) {
      for (const direction of DIRECTIONS) {
        this.setMapEntry(direction, before.interfaceName, undefined);
        if (before.chains[direction]) this.release(before.chains[direction]!);
      }
      this.setSources(before, undefined);
      this.local.delete(key);
    }
    if (!endpoint) return;
    const local: LocalEndpoint = this.local.get(key) ?? { interfaceName: endpoint.record.interfaceName, sources: [], applies: { ingress: new Set(), egress: new Set() }, chains: {} };
    this.setSources(local, endpoint.record);
    for (const direction of DIRECTIONS) {
      local.applies[direction].clear();
      for (const [id, policy] of this.policies) if (appliesTo(policy, direction, endpoint.labels)) local.applies[direction].add(id);
    }
    this.local.set(key, local);
    this.placeEndpoint(key, local);
  }

  /** Points the endpoint's interface at the chain for its policies and profiles, in order. */
  private placeEndpoint(key: string, local: LocalEndpoint): void {
    const { record } = this.endpoints.get(key)!;
    for (const direction of DIRECTIONS) {
      const owners: RuleChainOwner[] = [
        ...[...local.applies[direction]].sort((a, b) => comparePolicies(this.policies.get(a)!, this.policies.get(b)!)).map((id) => ({ kind: 'policy' as const, id, direction })),
        // A quarantined profile comes first: what it denies is not allowed by another.
        ...record.profiles.filter((p) => this.profiles.has(p)).sort((a, b) => Number(this.profiles.get(b)!.quarantined ?? false) - Number(this.profiles.get(a)!.quarantined ?? false)).map((id) => ({ kind: 'profile' as const, id, direction })),
      ];
      const names = owners.map((o) => this.ruleChainName(o));
      const chain = `e${direction[0]}_${digest(JSON.stringify([direction, names]))}`;
      if (local.chains[direction] === chain) continue;
      if (!this.held.has(chain)) {
        this.held.set(chain, { refs: 0, sets: [], chains: names });
        owners.forEach((owner, i) => this.holdRuleChain(names[i]!, owner));
        const policyCount = owners.filter((o) => o.kind === 'policy').length;
        this.setChain(chain, endpointChainRules(names.slice(0, policyCount), names.slice(policyCount)));
      }
      this.held.get(chain)!.refs++;
      const previous = local.chains[direction];
      local.chains[direction] = chain;
      this.setMapEntry(direction, local.interfaceName, chain);
      if (previous) this.release(previous);
    }
  }

  private ruleChainName(owner: RuleChainOwner): string {
    return owner.kind === 'policy' ? this.policyChainName(owner.id, owner.direction) : this.profileChainName(owner.id, owner.direction);
  }

  private holdRuleChain(name: string, owner: RuleChainOwner): void {
    const existing = this.held.get(name);
    if (existing) {
      existing.refs++;
      return;
    }
    this.held.set(name, { refs: 1, sets: [], chains: [] });
    this.fillChain(name, owner.kind === 'policy' ? this.policyRules(owner.id, owner.direction) : this.profiles.get(owner.id)?.[owner.direction]);
  }

  /** A policy's rules in one direction; none when it is gone or not of that type. */
  private policyRules(id: string, direction: Direction): Policy['ingress'] | undefined {
    const policy = this.policies.get(id);
    return policy?.types.includes(direction) ? policy[direction] : undefined;
  }

  /** (Re)writes a policy or profile chain from its rules, holding the sets they use. */
  private fillChain(name: string, rules: Policy['ingress'] | undefined): void {
    const held = this.held.get(name)!;
    const previousSets = held.sets.splice(0);
    const namer: SetNamer = {
      selector: (selector, version) => {
        const set = this.holdSelector(selector);
        held.sets.push(`sel:${set.names[4]}`);
        return set.names[version];
      },
      nets: (nets, version) => {
        const name = this.holdNets(nets, version);
        held.sets.push(`net:${name}`);
        return name;
      },
    };
    this.setChain(name, (rules ?? []).flatMap((rule) => ruleLines(rule, namer)));
    for (const set of previousSets) this.releaseSet(set);
  }

  private release(chain: string): void {
    const held = this.held.get(chain)!;
    if (--held.refs > 0) return;
    this.held.delete(chain);
    this.setChain(chain, undefined);
    for (const set of held.sets) this.releaseSet(set);
    for (const name of held.chains) this.release(name);
  }

  private policyChainName(id: string, direction: Direction): string {
    return `p${direction[0]}_${digest(`policy/${id}`)}`;
  }

  private profileChainName(name: string, direction: Direction): string {
    return `r${direction[0]}_${digest(`profile/${name}`)}`;
  }

  private holdSelector(selector: Selector): SelectorSet {
    const text = printSelector(selector);
    const id = digest(text);
    let set = this.selectorSets.get(`s4_${id}`);
    if (!set) {
      set = { selector, names: { 4: `s4_${id}`, 6: `s6_${id}` }, refs: 0, members: new Set(), counts: new Map() };
      this.selectorSets.set(set.names[4], set);
      for (const version of [4, 6] as const) this.setSet(set.names[version], version, false, []);
      for (const [key, endpoint] of this.endpoints) this.updateMembership(set, key, undefined, endpoint);
    }
    set.refs++;
    return set;
  }

  private holdNets(nets: readonly Cidr[], version: IpVersion): string {
    const elements = netsKey(nets);
    const name = `n${version}_${digest(elements.join(','))}`;
    const refs = this.netsSets.get(name) ?? 0;
    if (refs === 0) this.setSet(name, version, true, elements);
    this.netsSets.set(name, refs + 1);
    return name;
  }

  private releaseSet(held: string): void {
    const [kind, name] = held.split(':') as ['sel' | 'net', string];
    if (kind === 'net') {
      const refs = this.netsSets.get(name)! - 1;
      if (refs > 0) return void this.netsSets.set(name, refs);
      this.netsSets.delete(name);
      return this.setSet(name, undefined);
    }
    const set = this.selectorSets.get(name)!;
    if (--set.refs > 0) return;
    this.selectorSets.delete(name);
    for (const version of [4, 6] as const) this.setSet(set.names[version], undefined);
  }

  private updateMembership(set: SelectorSet, key: string, before: IndexedEndpoint | undefined, after: IndexedEndpoint | undefined): void {
    const was = before !== undefined && set.members.has(key);
    const is = after !== undefined && matches(set.selector, after.labels);
    if (!was && !is) return;
    if (was) for (const version of [4, 6] as const) for (const ip of addressesOf(before!.record, version)) this.count(set, version, ip, -1);
    if (is) for (const version of [4, 6] as const) for (const ip of addressesOf(after!.record, version)) this.count(set, version, ip, +1);
    if (is) set.members.add(key);
    else set.members.delete(key);
  }

  private count(set: SelectorSet, version: IpVersion, ip: string, by: 1 | -1): void {
    const n = (set.counts.get(ip) ?? 0) + by;
    const elements = this.ruleset.sets.get(set.names[version])!.elements;
    if (n > 0) set.counts.set(ip, n);
    else set.counts.delete(ip);
    const present = elements.has(ip);
    if (n > 0 && !present) elements.add(ip);
    if (n <= 0 && present) elements.delete(ip);
    if (present !== n > 0) this.touched.sets.add(set.names[version]);
  }

  /** The sources the endpoint's interface may send from: its addresses and any prefixes it is allowed. */
  private setSources(local: LocalEndpoint, record: EndpointRecord | undefined): void {
    const before = local.sources;
    local.sources = record ? sourceElements(record, this.felix) : [];
    for (const [set, element] of local.sources) this.countFixed(set, element, +1);
    for (const [set, element] of before) this.countFixed(set, element, -1);
  }

  private countFixed(set: FixedSetName, element: string, by: 1 | -1): void {
    const id = `${set} ${element}`;
    const n = (this.fixedCounts.get(id) ?? 0) + by;
    if (n > 0) this.fixedCounts.set(id, n);
    else this.fixedCounts.delete(id);
    const elements = this.ruleset.sets.get(set)!.elements;
    if ((n > 0) === elements.has(element)) return;
    if (n > 0) elements.add(element);
    else elements.delete(element);
    this.touched.sets.add(set);
  }

  private setSet(name: string, version: IpVersion | undefined, interval = false, elements: readonly string[] = []): void {
    if (version === undefined) this.ruleset.sets.delete(name);
    else this.ruleset.sets.set(name, { declaration: `type ${version === 4 ? 'ipv4_addr' : 'ipv6_addr'};${interval ? ' flags interval; auto-merge;' : ''}`, elements: new Set(elements) });
    this.touched.sets.add(name);
  }

  /** Sets a chain's rules; `onlyIfChanged`: touched only when they differ from what it holds. */
  private setChain(name: string, rules: readonly string[] | undefined, onlyIfChanged = false): void {
    const before = this.ruleset.chains.get(name);
    if (onlyIfChanged && before && rules && before.length === rules.length && before.every((r, i) => r === rules[i])) return;
    if (rules) this.ruleset.chains.set(name, rules);
    else this.ruleset.chains.delete(name);
    this.touched.chains.add(name);
  }

  private setMapEntry(direction: Direction, ifname: string, chain: string | undefined): void {
    if (chain) this.ruleset.maps[direction].set(ifname, chain);
    else this.ruleset.maps[direction].delete(ifname);
    this.touched.maps[direction].add(ifname);
  }
}

/** What the host does with what a workload sends it, once its egress policy allowed it. */
function hostActionRules(felix: FelixSettings): string[] {
  // Return hands the packet back to the host's other rules: in a table of its own, that is accept.
  return felix.defaultEndpointToHostAction === 'Drop' ? [] : ['accept'];
}

/** The encapsulations workloads may not send (all, unless FelixConfiguration lets them). */
function encapsulationRules(felix: FelixSettings): string[] {
  return ENCAPSULATIONS.filter((e) => !felix[e.allowFromWorkloads]).map((e) => `${e.match} drop`);
}

function protectedElement(service: ProtectedService): [FixedSetName, string] {
  if (service.address === undefined) return ['protected_local', `${service.protocol} . ${service.port}`];
  return [service.version === 6 ? 'protected6' : 'protected4', `${service.address} . ${service.protocol} . ${service.port}`];
}

/**
 * The (interface, source) elements of a local endpoint: its addresses, and, with spoofing allowed,
 * its allowed prefixes apart; a prefix inside another listed one is left out (the prefix sets hold
 * intervals, which may not overlap).
 */
function sourceElements(record: EndpointRecord, felix: FelixSettings): [FixedSetName, string][] {
  const allowed = felix.workloadSourceSpoofing === 'Any' ? record.allowedSources ?? [] : [];
  const elements: [FixedSetName, string][] = [];
  for (const version of [4, 6] as const) {
    for (const text of version === 4 ? record.ipv4 : record.ipv6) {
      const address = formatAddress({ version, value: parseCidr(`${text}/${ADDRESS_BITS[version]}`).network });
      elements.push([version === 4 ? 'wl_src4' : 'wl_src6', `"${record.interfaceName}" . ${address}`]);
    }
    const kept: Cidr[] = [];
    for (const cidr of allowed.filter((c) => c.version === version).sort((a, b) => a.prefix - b.prefix)) {
      if (!kept.some((k) => cidrsOverlap(k, cidr))) kept.push(cidr);
    }
    const set: FixedSetName = version === 4 ? 'wl_pfx4' : 'wl_pfx6';
    for (const cidr of kept) elements.push([set, `"${record.interfaceName}" . ${cidr.prefix === ADDRESS_BITS[version] ? formatAddress({ version, value: cidr.network }) : formatCidr(cidr)}`]);
  }
  return elements;
}

/** Whether a policy governs one direction of an endpoint with these labels. */
function appliesTo(policy: Policy, direction: Direction, labels: Labels): boolean {
  return policy.types.includes(direction) && matches(policy.selector, labels);
}

function addressesOf(record: EndpointRecord, version: IpVersion): readonly string[] {
  return version === 4 ? record.ipv4 : record.ipv6;
}

const PASSED = `meta mark and ${hex(MARK.pass)} == 0`;
const ALLOWED_ONLY = `meta mark and ${hex(MARK.ours)} == ${hex(MARK.allow)}`;

/**
 * An endpoint chain: its policies in order (the first Allow or Deny decides; Pass skips to the
 * profiles; none deciding is a drop), then its profiles (the first Allow decides), then drop.
 * It returns with the allow bit set for the dispatch chain to act on.
 */
function endpointChainRules(policies: readonly string[], profiles: readonly string[]): string[] {
  const rules = [CLEAR_MARK];
  for (const [i, chain] of policies.entries()) rules.push(i === 0 ? `jump ${chain}` : `${PASSED} jump ${chain}`, `${ALLOWED_ONLY} return`);
  if (policies.length > 0) rules.push(`${PASSED} drop`);
  if (policies.length > 0 && profiles.length > 0) rules.push(CLEAR_MARK);
  for (const chain of profiles) rules.push(`jump ${chain}`, `meta mark and ${hex(MARK.allow)} == ${hex(MARK.allow)} return`);
  rules.push('drop');
  return rules;
}
