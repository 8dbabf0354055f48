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
import type { Cidr, IpVersion } from '../net';
import { DEFAULT_FELIX_SETTINGS, NAMESPACE_LABEL, comparePolicies, type Direction, type FelixSettings, type Policy, type Profile } from './model';
import { CLEAR_MARK, MARK, hex, netsKey, ruleLines, type SetNamer } from './nft-rules';
import { Ruleset, Touched } from './ruleset';
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

  constructor(private readonly node: string) {
    this.ruleset.hostAction = DEFAULT_FELIX_SETTINGS.defaultEndpointToHostAction;
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

  setFelixSettings(settings: FelixSettings): void {
    if (this.ruleset.hostAction === settings.defaultEndpointToHostAction) return;
    this.ruleset.hostAction = settings.defaultEndpointToHostAction;
    this.touched.hostAction = true;
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
      for (const key of members) this.setEndpoint(key, this.endpoints.get(key)!.record);
    } else if ((before === undefined) !== (profile === undefined)) {
      // It came or went: its local endpoints' chains list it or not.
      for (const key of members) {
        const local = this.local.get(key);
        if (local) this.placeEndpoint(key, local);
      }
    }
  }

  /** Own labels over the profiles' labelsToApply (Calico's precedence), and the namespace label. */
  private labelsOf(record: EndpointRecord): Labels {
    const labels: Record<string, string> = {};
    for (const profile of record.profiles) Object.assign(labels, this.profiles.get(profile)?.labelsToApply);
    return { ...labels, ...record.labels, [NAMESPACE_LABEL]: record.namespace };
  }

  private updateLocal(key: string, endpoint: IndexedEndpoint | undefined): void {
    const before = this.local.get(key);
    if (before && (!endpoint || endpoint.record.interfaceName !== before.interfaceName)) {
      for (const direction of DIRECTIONS) {
        this.setMapEntry(direction, before.interfaceName, undefined);
        if (before.chains[direction]) this.release(before.chains[direction]!);
      }
      this.local.delete(key);
    }
    if (!endpoint) return;
    const local: LocalEndpoint = this.local.get(key) ?? { interfaceName: endpoint.record.interfaceName, applies: { ingress: new Set(), egress: new Set() }, chains: {} };
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
        ...record.profiles.filter((p) => this.profiles.has(p)).map((id) => ({ kind: 'profile' as const, id, direction })),
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

  private setSet(name: string, version: IpVersion | undefined, interval = false, elements: readonly string[] = []): void {
    if (version === undefined) this.ruleset.sets.delete(name);
    else this.ruleset.sets.set(name, { version, interval, elements: new Set(elements) });
    this.touched.sets.add(name);
  }

  private setChain(name: string, rules: readonly string[] | undefined): void {
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
