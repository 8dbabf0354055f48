/**
 * One policy rule as nftables rule lines. Selector and `nets` matches refer to named sets (the
 * caller names them, and so keeps them), so that an endpoint joining a selector changes a set's
 * elements, never a rule. A rule that can match in both IP families and tests no address is one
 * line; otherwise one line per family it can match in.
 *
 * Verdicts work with the packet mark, as Calico's do: a policy chain is shared by every endpoint
 * it applies to, so Allow and Pass set a bit and return to the endpoint's chain, which decides.
 */
import { formatCidr, type Cidr, type IpVersion } from '../net';
import type { IcmpMatch, PolicyRule, PortRange, RuleEnd } from './model';
import type { Selector } from './selector';

/** The mark bits we own (the rest of the mark is left as it was). */
export const MARK = { allow: 0x10000, pass: 0x20000, ours: 0x30000 } as const;
export const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;
export const CLEAR_MARK = `meta mark set meta mark and ${hex(~MARK.ours >>> 0)}`;

/** Names the set for a selector or a list of nets in one family, keeping it while rules use it. */
export interface SetNamer {
  selector(selector: Selector, version: IpVersion): string;
  nets(nets: readonly Cidr[], version: IpVersion): string;
}

const ACTIONS = {
  Allow: `meta mark set meta mark or ${hex(MARK.allow)} return`,
  Pass: `meta mark set meta mark or ${hex(MARK.pass)} return`,
  Deny: 'drop',
  Log: 'log prefix "calico-policy: " level info',
} as const;

const ICMP_PROTOCOL = { 4: 1, 6: 58 } as const;

/**
 * The families a rule can match in. As Calico renders a rule per family: a list of `nets` or
 * `notNets` that holds networks of only the other family leaves the rule out of this family
 * (a `notNets` of IPv4 networks alone never becomes "every IPv6 address").
 */
function familiesOf(rule: PolicyRule): IpVersion[] {
  return ([4, 6] as const).filter((v) => {
    if (rule.ipVersion !== undefined && rule.ipVersion !== v) return false;
    if (rule.protocol?.number === ICMP_PROTOCOL[v === 4 ? 6 : 4]) return false;
    const leftIn = (nets: readonly Cidr[]) => nets.length === 0 || nets.some((n) => n.version === v);
    return [rule.source, rule.destination].every((end) => leftIn(end.nets) && leftIn(end.notNets));
  });
}

function testsAddresses(end: RuleEnd): boolean {
  return end.nets.length > 0 || end.notNets.length > 0 || end.selector !== undefined || end.notSelector !== undefined;
}

function portList(ports: readonly PortRange[]): string {
  const items = ports.map((p) => (p.from === p.to ? `${p.from}` : `${p.from}-${p.to}`));
  return items.length === 1 ? items[0]! : `{ ${items.join(', ')} }`;
}

function addressMatches(end: RuleEnd, field: 'saddr' | 'daddr', version: IpVersion, sets: SetNamer): string[] {
  const ip = version === 4 ? 'ip' : 'ip6';
  const parts: string[] = [];
  const nets = end.nets.filter((n) => n.version === version);
  const notNets = end.notNets.filter((n) => n.version === version);
  if (nets.length > 0) parts.push(`${ip} ${field} @${sets.nets(nets, version)}`);
  if (notNets.length > 0) parts.push(`${ip} ${field} != @${sets.nets(notNets, version)}`);
  if (end.selector) parts.push(`${ip} ${field} @${sets.selector(end.selector, version)}`);
  if (end.notSelector) parts.push(`${ip} ${field} != @${sets.selector(end.notSelector, version)}`);
  return parts;
}

function icmpMatch(match: IcmpMatch, version: IpVersion, negated: boolean): string {
  const icmp = version === 4 ? 'icmp' : 'icmpv6';
  if (match.code === undefined) return `${icmp} type ${negated ? '!= ' : ''}${match.type}`;
  if (!negated) return `${icmp} type ${match.type} ${icmp} code ${match.code}`;
  return `${icmp} type . ${icmp} code != { ${match.type} . ${match.code} }`;
}

export function ruleLines(rule: PolicyRule, sets: SetNamer): string[] {
  const families = familiesOf(rule);
  const perFamily = rule.ipVersion !== undefined || rule.icmp !== undefined || rule.notICMP !== undefined || testsAddresses(rule.source) || testsAddresses(rule.destination);
  const lines: string[] = [];
  // One line for both families only when both are left and nothing differs between them.
  for (const version of perFamily || families.length < 2 ? families : [undefined]) {
    const parts: string[] = [];
    const addresses = version === undefined ? [] : [...addressMatches(rule.source, 'saddr', version, sets), ...addressMatches(rule.destination, 'daddr', version, sets)];
    if (version !== undefined && addresses.length === 0) parts.push(`meta nfproto ipv${version}`);
    parts.push(...addresses);
    if (rule.protocol) parts.push(`meta l4proto ${rule.protocol.number}`);
    if (rule.notProtocol) parts.push(`meta l4proto != ${rule.notProtocol.number}`);
    if (version !== undefined && rule.icmp) parts.push(icmpMatch(rule.icmp, version, false));
    if (version !== undefined && rule.notICMP) parts.push(icmpMatch(rule.notICMP, version, true));
    if (rule.source.ports.length > 0) parts.push(`th sport ${portList(rule.source.ports)}`);
    if (rule.source.notPorts.length > 0) parts.push(`th sport != ${portList(rule.source.notPorts)}`);
    if (rule.destination.ports.length > 0) parts.push(`th dport ${portList(rule.destination.ports)}`);
    if (rule.destination.notPorts.length > 0) parts.push(`th dport != ${portList(rule.destination.notPorts)}`);
    parts.push(ACTIONS[rule.action]);
    lines.push(parts.join(' '));
  }
  return lines;
}

/** The canonical text of a list of nets in one family (the set's identity and its elements). */
export function netsKey(nets: readonly Cidr[]): string[] {
  return [...new Set(nets.map(formatCidr))].sort();
}
