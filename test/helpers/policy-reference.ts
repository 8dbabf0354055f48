/**
 * A reference evaluator of Calico's policy semantics, written from Calico's documentation
 * (docs.projectcalico.org: "Get started with Calico network policy", the NetworkPolicy,
 * GlobalNetworkPolicy, Profile and Rule resources), not from our compiler: it shares nothing with
 * shared/policy (its own selector trees, nets and ports), so that the differential test compares two
 * readings of the same documents.
 *
 * What the documents say, as evaluated here, for one endpoint and one direction:
 * - the policies that apply are those whose selector matches the endpoint's labels and whose types
 *   include the direction; they are taken in ascending `order` (a policy without one comes last),
 *   then by name;
 * - in each, the rules of that direction are tried in turn: the first that matches decides with its
 *   action (Allow, Deny), Pass skips the remaining policies for the profiles, Log goes on;
 * - when policies applied and none decided or passed, the packet is denied;
 * - then the endpoint's profiles, in order, the same way; when none decides, denied;
 * - an endpoint's labels are its own over its profiles' labelsToApply, plus
 *   `projectcalico.org/namespace`;
 * - a rule matches when every field it sets matches: ipVersion; protocol/notProtocol; icmp/notICMP
 *   (type, and code when given); on each side nets (any), notNets (none), selector (the address is
 *   one of an endpoint the selector matches), notSelector (of none it matches), ports/notPorts;
 * - a rule whose nets (or notNets) list networks of the other IP family only is not rendered in a
 *   family at all (Calico renders rules per family and leaves out those a family's filtering empties).
 */

/** A selector as a tree: rendered to Calico's syntax for the resources, evaluated directly here. */
export type SelectorTree =
  | { readonly op: 'all' }
  | { readonly op: 'has'; readonly key: string }
  | { readonly op: '==' | '!='; readonly key: string; readonly value: string }
  | { readonly op: 'in' | 'not in'; readonly key: string; readonly values: readonly string[] }
  | { readonly op: '!'; readonly operand: SelectorTree }
  | { readonly op: '&&' | '||'; readonly left: SelectorTree; readonly right: SelectorTree };

export function renderSelector(s: SelectorTree): string {
  switch (s.op) {
    case 'all':
      return 'all()';
    case 'has':
      return `has(${s.key})`;
    case '==':
    case '!=':
      return `${s.key} ${s.op} '${s.value}'`;
    case 'in':
    case 'not in':
      return `${s.key} ${s.op} {${s.values.map((v) => `'${v}'`).join(', ')}}`;
    case '!':
      return `!(${renderSelector(s.operand)})`;
    case '&&':
    case '||':
      return `(${renderSelector(s.left)}) ${s.op} (${renderSelector(s.right)})`;
  }
}

export function selects(s: SelectorTree, labels: Readonly<Record<string, string>>): boolean {
  switch (s.op) {
    case 'all':
      return true;
    case 'has':
      return s.key in labels;
    case '==':
      return labels[s.key] === s.value;
    case '!=':
      return labels[s.key] !== s.value;
    case 'in':
      return s.key in labels && s.values.includes(labels[s.key]!);
    case 'not in':
      return !(s.key in labels && s.values.includes(labels[s.key]!));
    case '!':
      return !selects(s.operand, labels);
    case '&&':
      return selects(s.left, labels) && selects(s.right, labels);
    case '||':
      return selects(s.left, labels) || selects(s.right, labels);
  }
}

export type Family = 4 | 6;

export interface Net {
  readonly family: Family;
  readonly text: string;
  readonly network: bigint;
  readonly prefix: number;
}

export function net(text: string): Net {
  const [address, prefix] = text.split('/');
  const family: Family = address!.includes(':') ? 6 : 4;
  return { family, text, network: addressValue(address!), prefix: Number(prefix) };
}

export function addressValue(text: string): bigint {
  if (!text.includes(':')) return text.split('.').reduce((n, part) => (n << 8n) | BigInt(Number(part)), 0n);
  const [head, tail] = text.split('::');
  const groups = (part: string | undefined) => (part ? part.split(':') : []);
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  return all.reduce((n, group) => (n << 16n) | BigInt(parseInt(group, 16)), 0n);
}

function inNet(n: Net, family: Family, address: string): boolean {
  if (n.family !== family) return false;
  const bits = family === 4 ? 32 : 128;
  const shift = BigInt(bits - n.prefix);
  return addressValue(address) >> shift === n.network >> shift;
}

export interface Ports {
  readonly from: number;
  readonly to: number;
}

export interface RefRuleEnd {
  readonly nets?: readonly Net[];
  readonly notNets?: readonly Net[];
  readonly selector?: SelectorTree;
  readonly notSelector?: SelectorTree;
  readonly ports?: readonly Ports[];
  readonly notPorts?: readonly Ports[];
}

export interface RefRule {
  readonly action: 'Allow' | 'Deny' | 'Pass' | 'Log';
  readonly ipVersion?: Family;
  readonly protocol?: number;
  readonly notProtocol?: number;
  readonly icmp?: { readonly type: number; readonly code?: number };
  readonly notICMP?: { readonly type: number; readonly code?: number };
  readonly source: RefRuleEnd;
  readonly destination: RefRuleEnd;
}

export type Direction = 'ingress' | 'egress';

export interface RefPolicy {
  readonly name: string;
  readonly order?: number;
  readonly selector: SelectorTree;
  readonly types: readonly Direction[];
  readonly ingress: readonly RefRule[];
  readonly egress: readonly RefRule[];
}

export interface RefProfile {
  readonly name: string;
  readonly labelsToApply: Readonly<Record<string, string>>;
  readonly ingress: readonly RefRule[];
  readonly egress: readonly RefRule[];
}

export interface RefEndpoint {
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly profiles: readonly string[];
  readonly addresses: readonly string[];
}

export interface Packet {
  readonly family: Family;
  readonly src: string;
  readonly dst: string;
  readonly proto: number;
  readonly sport: number;
  readonly dport: number;
  readonly icmp?: readonly [number, number];
}

export class ReferenceCluster {
  constructor(
    readonly endpoints: readonly RefEndpoint[],
    readonly policies: readonly RefPolicy[],
    readonly profiles: readonly RefProfile[],
  ) {}

  labelsOf(endpoint: RefEndpoint): Record<string, string> {
    const labels: Record<string, string> = {};
    for (const name of endpoint.profiles) Object.assign(labels, this.profiles.find((p) => p.name === name)?.labelsToApply);
    return { ...labels, ...endpoint.labels, 'projectcalico.org/namespace': endpoint.namespace };
  }

  /** Whether `address` belongs to an endpoint `selector` matches. */
  private selected(selector: SelectorTree, address: string): boolean {
    return this.endpoints.some((e) => e.addresses.includes(address) && selects(selector, this.labelsOf(e)));
  }

  private endMatches(end: RefRuleEnd, address: string, port: number, packet: Packet): boolean {
    if (end.nets && end.nets.length > 0 && !end.nets.some((n) => inNet(n, packet.family, address))) return false;
    if (end.notNets && end.notNets.some((n) => inNet(n, packet.family, address))) return false;
    if (end.selector && !this.selected(end.selector, address)) return false;
    if (end.notSelector && this.selected(end.notSelector, address)) return false;
    const ported = packet.proto === 6 || packet.proto === 17;
    if (end.ports && end.ports.length > 0 && !(ported && end.ports.some((r) => port >= r.from && port <= r.to))) return false;
    if (end.notPorts && end.notPorts.length > 0 && ported && end.notPorts.some((r) => port >= r.from && port <= r.to)) return false;
    return true;
  }

  ruleMatches(rule: RefRule, packet: Packet): boolean {
    // Rendered per family: a family the nets or notNets filter down to nothing has no such rule.
    for (const end of [rule.source, rule.destination]) {
      for (const list of [end.nets, end.notNets]) if (list && list.length > 0 && !list.some((n) => n.family === packet.family)) return false;
    }
    if (rule.ipVersion !== undefined && rule.ipVersion !== packet.family) return false;
    if (rule.protocol !== undefined && rule.protocol !== packet.proto) return false;
    if (rule.notProtocol !== undefined && rule.notProtocol === packet.proto) return false;
    const icmpProto = packet.proto === 1 || packet.proto === 58;
    const icmpIs = (m: { type: number; code?: number }) => icmpProto && packet.icmp !== undefined && packet.icmp[0] === m.type && (m.code === undefined || packet.icmp[1] === m.code);
    if (rule.icmp && !icmpIs(rule.icmp)) return false;
    if (rule.notICMP && icmpIs(rule.notICMP)) return false;
    return this.endMatches(rule.source, packet.src, packet.sport, packet) && this.endMatches(rule.destination, packet.dst, packet.dport, packet);
  }

  /** The verdict for one endpoint in one direction. */
  allows(endpoint: RefEndpoint, direction: Direction, packet: Packet): boolean {
    const labels = this.labelsOf(endpoint);
    const applying = this.policies
      .filter((p) => p.types.includes(direction) && selects(p.selector, labels))
      .sort((a, b) => (a.order ?? Infinity) - (b.order ?? Infinity) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    let passed = false;
    for (const policy of applying) {
      const decided = this.firstDecision(policy[direction], packet);
      if (decided === 'Allow') return true;
      if (decided === 'Deny') return false;
      if (decided === 'Pass') {
        passed = true;
        break;
      }
    }
    if (applying.length > 0 && !passed) return false;
    for (const name of endpoint.profiles) {
      const profile = this.profiles.find((p) => p.name === name);
      if (!profile) continue;
      const decided = this.firstDecision(profile[direction], packet);
      if (decided === 'Allow') return true;
      if (decided === 'Deny') return false;
    }
    return false;
  }

  private firstDecision(rules: readonly RefRule[], packet: Packet): 'Allow' | 'Deny' | 'Pass' | undefined {
    for (const rule of rules) {
      if (rule.action === 'Log' || !this.ruleMatches(rule, packet)) continue;
      return rule.action;
    }
    return undefined;
  }

  /** Whether a packet from `from` to `to` (undefined: not a local endpoint) is delivered. */
  delivers(from: RefEndpoint | undefined, to: RefEndpoint | undefined, packet: Packet): boolean {
    return (from === undefined || this.allows(from, 'egress', packet)) && (to === undefined || this.allows(to, 'ingress', packet));
  }
}
