/**
 * The `inet calico` table as data, and as nft script: the whole table (at a resync: delete and
 * recreate in one transaction) or the changes from what is programmed to what is wanted, touching
 * only named items. Pure: the dataplane module runs the script.
 *
 * The table has a fixed part (FIXED_PART), the same on every host and at every moment, that alone
 * keeps every workload closed: it exists before anything is read from the datastore (the daemon
 * installs it first; a plugin running without the daemon makes sure of it before it wires a veth),
 * and a packet from or to a `cali*` interface passes it only once the interface's endpoint has been
 * programmed. Packet path, in Felix's order (see the README's security model):
 *   prerouting (raw): from a cali* interface -> wl-guard: a source that is not one of the
 *            endpoint's own addresses is dropped (anti-spoofing; IPv6 neighbour discovery aside).
 *            Every packet, before conntrack: a forged source could otherwise ride another
 *            workload's established flow;
 *   forward: from a cali* interface -> from-wl: past established flows, what workloads may never
 *            reach (the datastore) and the encapsulations they may not send (wl-encap) are
 *            dropped, before any policy; then its egress chain by the `egress` map;
 *            to a cali* interface -> to-wl (its ingress chain by the `ingress` map);
 *   input:   a tunnel packet (VXLAN, IPIP) from an address that is not a known host's is dropped;
 *            from a cali* interface -> wl-to-host: as from-wl (and this host's own protected
 *            services, the daemon's metrics), then host-action: defaultEndpointToHostAction;
 *   output:  nothing (the host reaches its own workloads, as in Calico).
 * An interface missing from a map or from the source sets (a workload whose endpoint is not
 * programmed yet) is dropped.
 */
import type { Direction } from './model';
import { ENCAPSULATIONS } from '../routing/encapsulations';
import { CLEAR_MARK, MARK, hex } from './nft-rules';

export const TABLE = 'inet calico';

/** The sets of the fixed part: declared by it, filled by the calculator. */
export const FIXED_SETS = {
  /**
   * (interface, source) pairs a workload may send from: its own addresses, in a hash (the lookup
   * every packet of every workload makes: an interval set cost 5-8% of a TCP stream's throughput,
   * measured), and the prefixes it is allowed besides, as intervals (empty unless spoofing is allowed).
   */
  wl_src4: 'type ifname . ipv4_addr;',
  wl_src6: 'type ifname . ipv6_addr;',
  wl_pfx4: 'type ifname . ipv4_addr; flags interval;',
  wl_pfx6: 'type ifname . ipv6_addr; flags interval;',
  /** (address, protocol, port) of what workloads may never reach: the datastore, the daemon's metrics. */
  protected4: 'type ipv4_addr . inet_proto . inet_service;',
  protected6: 'type ipv6_addr . inet_proto . inet_service;',
  /** (protocol, port) of such services listening on every address of this host. */
  protected_local: 'type inet_proto . inet_service;',
  /** The addresses of the known hosts (Nodes): the only sources tunnel packets are taken from. */
  hosts4: 'type ipv4_addr;',
  hosts6: 'type ipv6_addr;',
} as const;
export type FixedSetName = keyof typeof FIXED_SETS;

/** The chains of the fixed part whose rules the calculator keeps (created empty by the fixed part). */
export const HOST_ACTION_CHAIN = 'host-action';
export const WORKLOAD_ENCAP_CHAIN = 'wl-encap';
const KEPT_CHAINS = [HOST_ACTION_CHAIN, WORKLOAD_ENCAP_CHAIN];

export interface NftSet {
  /** What follows the set's name in its declaration. */
  readonly declaration: string;
  readonly elements: Set<string>;
}

export class Ruleset {
  /** Every set with its elements: the fixed part's (FIXED_SETS) and the policies' own. */
  readonly sets = new Map<string, NftSet>();
  /** Regular chains (policies, profiles, endpoints, and the fixed part's kept chains) by name, with their rules. */
  readonly chains = new Map<string, readonly string[]>();
  /** Interface name -> the endpoint chain its traffic goes through, per direction. */
  readonly maps: Record<Direction, Map<string, string>> = { ingress: new Map(), egress: new Map() };

  constructor() {
    for (const [name, declaration] of Object.entries(FIXED_SETS)) this.sets.set(name, { declaration, elements: new Set() });
  }
}

/** What changed since the last programming, by name. */
export class Touched {
  readonly sets = new Set<string>();
  readonly chains = new Set<string>();
  readonly maps: Record<Direction, Set<string>> = { ingress: new Set(), egress: new Set() };

  get empty(): boolean {
    return this.sets.size === 0 && this.chains.size === 0 && this.maps.ingress.size === 0 && this.maps.egress.size === 0;
  }
}

const ESTABLISHED = ['ct state established,related accept', 'ct state invalid drop'];
/** Neighbour discovery and MLD, which the host needs from its workloads (as Felix lets them through). */
const ND_TYPES = '{ mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report, nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert }';
const NEIGHBOUR_DISCOVERY = `meta l4proto ipv6-icmp icmpv6 type ${ND_TYPES} accept`;
const ALLOWED = `meta mark and ${hex(MARK.allow)} == ${hex(MARK.allow)}`;

const PROTECTED_DESTINATIONS = ['ip daddr . meta l4proto . th dport @protected4 drop', 'ip6 daddr . meta l4proto . th dport @protected6 drop'];

/**
 * The guard: what no policy can open. Anti-spoofing looks at every packet (the prerouting rule and
 * wl-guard); what workloads may never reach or send is looked at only on a flow's first packet, past
 * the conntrack rules: such a flow's first packet is dropped, so it never becomes established. (A
 * lookup less on every packet of a stream: the guard's cost is a bench figure, at most 5% of TCP
 * throughput.) Exported for the bench, which measures the table with and without these rules.
 */
export const GUARD_RULES = {
  prerouting: 'iifname "cali*" goto wl-guard',
  spoofing: [
    // Before an IPv6 address is usable the kernel speaks from :: or its link-local address.
    `ip6 saddr { ::, fe80::/10 } icmpv6 type ${ND_TYPES} return`,
    // An own address matches the first lookup, and the rule goes no further.
    'iifname . ip saddr != @wl_src4 iifname . ip saddr != @wl_pfx4 drop',
    'iifname . ip6 saddr != @wl_src6 iifname . ip6 saddr != @wl_pfx6 drop',
  ],
  forwarded: [...PROTECTED_DESTINATIONS, `jump ${WORKLOAD_ENCAP_CHAIN}`],
  /** To this host: its services on every address besides (the packet is local here). */
  toHost: [...PROTECTED_DESTINATIONS, 'meta l4proto . th dport @protected_local drop', `jump ${WORKLOAD_ENCAP_CHAIN}`],
} as const;

/** Regular chains of the fixed part, with their rules (in the order they must be created). */
const FIXED_CHAINS: readonly (readonly [string, readonly string[]])[] = [
  ['wl-guard', GUARD_RULES.spoofing],
  ['from-wl', [...ESTABLISHED, ...GUARD_RULES.forwarded, CLEAR_MARK, 'iifname vmap @egress', `${ALLOWED} return`, 'drop']],
  ['to-wl', [...ESTABLISHED, CLEAR_MARK, 'oifname vmap @ingress', `${ALLOWED} accept`, 'drop']],
  ['wl-to-host', [...ESTABLISHED, NEIGHBOUR_DISCOVERY, ...GUARD_RULES.toHost, CLEAR_MARK, 'iifname vmap @egress', `${ALLOWED} jump ${HOST_ACTION_CHAIN}`, 'drop']],
];

const BASE_CHAINS: readonly (readonly [string, string, readonly string[]])[] = [
  ['prerouting', 'type filter hook prerouting priority raw; policy accept;', [GUARD_RULES.prerouting]],
  ['forward', 'type filter hook forward priority filter; policy accept;', ['iifname "cali*" jump from-wl', 'oifname "cali*" jump to-wl']],
  ['input', 'type filter hook input priority filter; policy accept;', [
    ...ENCAPSULATIONS.flatMap((e) => [`${e.match} ip saddr != @hosts4 drop`, `${e.match} ip6 saddr != @hosts6 drop`]),
    'iifname "cali*" goto wl-to-host',
  ]],
];

/**
 * The fixed part as commands that make it exist whatever the table holds now, in one transaction:
 * what is absent is created, the fixed chains are rewritten whole, and nothing the calculator keeps
 * (set elements, map entries, the kept chains, the policies' chains) is touched. Running it again,
 * or after the daemon has programmed the table, changes nothing.
 */
export const FIXED_PART = ((): string => {
  const lines = [`add table ${TABLE}`];
  for (const [name, declaration] of Object.entries(FIXED_SETS)) lines.push(`add set ${TABLE} ${name} { ${declaration} }`);
  lines.push(`add map ${TABLE} ingress { type ifname : verdict; }`, `add map ${TABLE} egress { type ifname : verdict; }`);
  for (const name of KEPT_CHAINS) lines.push(`add chain ${TABLE} ${name}`);
  for (const [name, rules] of FIXED_CHAINS) lines.push(`add chain ${TABLE} ${name}`, `flush chain ${TABLE} ${name}`, ...rules.map((r) => `add rule ${TABLE} ${name} ${r}`));
  for (const [name, hook, rules] of BASE_CHAINS) lines.push(`add chain ${TABLE} ${name} { ${hook} }`, `flush chain ${TABLE} ${name}`, ...rules.map((r) => `add rule ${TABLE} ${name} ${r}`));
  return `${lines.join('\n')}\n`;
})();

/** The fixed part alone, replacing whatever the table holds (when it cannot be added to what is there). */
export const FIXED_TABLE = `table ${TABLE}\ndelete table ${TABLE}\n${FIXED_PART}`;

const quote = (name: string) => `"${name}"`;
const isFixedSet = (name: string) => name in FIXED_SETS;

function elementLines(verb: 'add' | 'delete', name: string, elements: readonly string[]): string[] {
  const lines: string[] = [];
  // Bounded lines: nft reads each command whole.
  for (let i = 0; i < elements.length; i += 500) lines.push(`${verb} element ${TABLE} ${name} { ${elements.slice(i, i + 500).join(', ')} }`);
  return lines;
}

function mapEntries(map: Map<string, string>, names: Iterable<string>): string[] {
  return [...names].map((ifname) => `${quote(ifname)} : jump ${map.get(ifname)}`);
}

/** The whole table, replacing whatever our table held, in one transaction. */
export function renderTable(ruleset: Ruleset): string {
  const lines = [FIXED_TABLE.trimEnd()];
  for (const [name, set] of ruleset.sets) if (!isFixedSet(name)) lines.push(`add set ${TABLE} ${name} { ${set.declaration} }`);
  for (const name of ruleset.chains.keys()) if (!KEPT_CHAINS.includes(name)) lines.push(`add chain ${TABLE} ${name}`);
  for (const [name, set] of ruleset.sets) lines.push(...elementLines('add', name, [...set.elements]));
  for (const [name, rules] of ruleset.chains) lines.push(...rules.map((r) => `add rule ${TABLE} ${name} ${r}`));
  for (const direction of ['ingress', 'egress'] as const) {
    const map = ruleset.maps[direction];
    lines.push(...elementLines('add', direction, mapEntries(map, map.keys())));
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The changes from `programmed` to `wanted` for the touched names, ordered so that nothing is
 * referred to before it exists or removed while referred to. (Through planChanges.)
 */
function renderChanges(programmed: Ruleset, wanted: Ruleset, touched: Touched): string {
  const lines: string[] = [];
  const removedSets: string[] = [];
  for (const name of touched.sets) {
    const before = programmed.sets.get(name);
    const after = wanted.sets.get(name);
    if (!after) {
      if (before) removedSets.push(name);
      continue;
    }
    if (!before) lines.push(`add set ${TABLE} ${name} { ${after.declaration} }`);
    const added = [...after.elements].filter((e) => !before?.elements.has(e));
    const removed = before ? [...before.elements].filter((e) => !after.elements.has(e)) : [];
    lines.push(...elementLines('add', name, added), ...elementLines('delete', name, removed));
  }
  const removedChains: string[] = [];
  const filled: string[] = [];
  for (const name of touched.chains) {
    const before = programmed.chains.get(name);
    const after = wanted.chains.get(name);
    if (!after) {
      if (before) removedChains.push(name);
      continue;
    }
    if (before && sameRules(before, after)) continue;
    lines.push(before ? `flush chain ${TABLE} ${name}` : `add chain ${TABLE} ${name}`);
    filled.push(name);
  }
  for (const name of filled) lines.push(...wanted.chains.get(name)!.map((r) => `add rule ${TABLE} ${name} ${r}`));
  for (const direction of ['ingress', 'egress'] as const) {
    const before = programmed.maps[direction];
    const after = wanted.maps[direction];
    const gone = [...touched.maps[direction]].filter((ifname) => before.has(ifname) && before.get(ifname) !== after.get(ifname));
    const now = [...touched.maps[direction]].filter((ifname) => after.has(ifname) && before.get(ifname) !== after.get(ifname));
    lines.push(...elementLines('delete', direction, gone.map(quote)), ...elementLines('add', direction, mapEntries(after, now)));
  }
  lines.push(...removedChains.map((name) => `flush chain ${TABLE} ${name}`), ...removedChains.map((name) => `delete chain ${TABLE} ${name}`));
  lines.push(...removedSets.map((name) => `delete set ${TABLE} ${name}`));
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

function sameRules(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((r, i) => r === b[i]);
}

/**
 * The script from `programmed` to `wanted` for the touched names, and what to record once nft has
 * applied it: the state it was rendered from (copied now), not whatever `wanted` holds by then,
 * because changes keep arriving while nft runs.
 */
export function planChanges(programmed: Ruleset, wanted: Ruleset, touched: Touched): { script: string; commit: () => void } {
  const script = renderChanges(programmed, wanted, touched);
  const rendered = new Ruleset();
  copyTouched(rendered, wanted, touched);
  return { script, commit: () => copyTouched(programmed, rendered, touched) };
}

/** `target` takes the state of the touched names from `source` (a name absent there goes). */
function copyTouched(target: Ruleset, source: Ruleset, touched: Touched): void {
  for (const name of touched.sets) {
    const set = source.sets.get(name);
    if (set) target.sets.set(name, { declaration: set.declaration, elements: new Set(set.elements) });
    else target.sets.delete(name);
  }
  for (const name of touched.chains) {
    const rules = source.chains.get(name);
    if (rules) target.chains.set(name, rules);
    else target.chains.delete(name);
  }
  for (const direction of ['ingress', 'egress'] as const) {
    for (const ifname of touched.maps[direction]) {
      const chain = source.maps[direction].get(ifname);
      if (chain) target.maps[direction].set(ifname, chain);
      else target.maps[direction].delete(ifname);
    }
  }
}

/** A copy of the whole ruleset (what a full programming leaves in the kernel). */
export function copyRuleset(ruleset: Ruleset): Ruleset {
  const everything = new Touched();
  for (const name of ruleset.sets.keys()) everything.sets.add(name);
  for (const name of ruleset.chains.keys()) everything.chains.add(name);
  for (const direction of ['ingress', 'egress'] as const) for (const ifname of ruleset.maps[direction].keys()) everything.maps[direction].add(ifname);
  const copy = new Ruleset();
  copyTouched(copy, ruleset, everything);
  return copy;
}
