import test from 'ava';
import { ruleLines, type SetNamer } from '../../shared/policy/nft-rules';
import { validatePolicy } from '../../shared/policy/validate';

const namer: SetNamer = { selector: (_s, v) => `s${v}_x`, nets: (_n, v) => `n${v}_x` };
const linesOf = (rule: Record<string, unknown>) => ruleLines(validatePolicy({ kind: 'GlobalNetworkPolicy', metadata: { name: 'p' }, spec: { ingress: [rule] } }).ingress[0]!, namer);

test('policy rules - a rule is compiled per family, and left out of a family where its nets or notNets leave nothing (as Calico)', (t) => {
  t.deepEqual(linesOf({ action: 'Allow' }), ['meta mark set meta mark or 0x00010000 return'], 'no address test: one line for both families');
  t.deepEqual(linesOf({ action: 'Allow', source: { notNets: ['10.78.0.0/16'] } }), ['ip saddr != @n4_x meta mark set meta mark or 0x00010000 return'], 'notNets of IPv4 alone never becomes "all IPv6"');
  t.deepEqual(linesOf({ action: 'Allow', destination: { nets: ['fd00::/8'] } }), ['ip6 daddr @n6_x meta mark set meta mark or 0x00010000 return']);
  t.deepEqual(linesOf({ action: 'Deny', source: { nets: ['10.0.0.0/8'], notNets: ['fd00::/8'] } }), [], 'IPv4 nets and IPv6 notNets: no family is left');
  t.deepEqual(linesOf({ action: 'Allow', source: { notNets: ['10.0.0.0/8', 'fd00::/8'] } }).length, 2, 'both families listed: both compiled');
  t.deepEqual(linesOf({ action: 'Allow', source: { selector: 'has(a)' } }), ['ip saddr @s4_x meta mark set meta mark or 0x00010000 return', 'ip6 saddr @s6_x meta mark set meta mark or 0x00010000 return'], 'a selector: one line per family (an empty family set matches nothing)');
  t.deepEqual(linesOf({ action: 'Allow', protocol: 'ICMPv6' }), ['meta nfproto ipv6 meta l4proto 58 meta mark set meta mark or 0x00010000 return'], 'ICMPv6 never in IPv4');
});
