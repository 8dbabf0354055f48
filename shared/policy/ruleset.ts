/**
 * The `inet calico` table as data, and as nft script: the whole table (at a resync: delete and
 * recreate in one transaction) or the changes from what is programmed to what is wanted, touching
 * only named items. Pure: the dataplane module runs the script.
 *
 * Packet path (see the README's policy section):
 *   forward: from a cali* interface -> from-wl (its egress chain by the `egress` map),
 *            to a cali* interface -> to-wl (its ingress chain by the `ingress` map);
 *   input:   from a cali* interface -> wl-to-host (egress chain, then defaultEndpointToHostAction);
 *   output:  nothing (the host reaches its own workloads, as in Calico).
 * An interface missing from a map (a workload whose endpoint is not programmed yet) is dropped.
 */
import type { Direction, EndpointToHostAction } from './model';
import { CLEAR_MARK, MARK, hex } from './nft-rules';

export const TABLE = 'inet calico';

export interface NftSet {
  readonly version: 4 | 6;
  /** Networks (nets matches); else single addresses (selector members). */
  readonly interval: boolean;
  readonly elements: Set<string>;
}

export class Ruleset {
  readonly sets = new Map<string, NftSet>();
  /** Regular chains (policies, profiles, endpoints) by name, with their rules. */
  readonly chains = new Map<string, readonly string[]>();
  /** Interface name -> the endpoint chain its traffic goes through, per direction. */
  readonly maps: Record<Direction, Map<string, string>> = { ingress: new Map(), egress: new Map() };
  hostAction: EndpointToHostAction = 'Drop';
}

/** What changed since the last programming, by name. */
export class Touched {
  readonly sets = new Set<string>();
  readonly chains = new Set<string>();
  readonly maps: Record<Direction, Set<string>> = { ingress: new Set(), egress: new Set() };
  hostAction = false;

  get empty(): boolean {
    return this.sets.size === 0 && this.chains.size === 0 && this.maps.ingress.size === 0 && this.maps.egress.size === 0 && !this.hostAction;
  }
}

const ESTABLISHED = ['ct state established,related accept', 'ct state invalid drop'];
/** Neighbour discovery and MLD from a workload to its host are always let through (as Felix does). */
const NEIGHBOUR_DISCOVERY = 'meta l4proto ipv6-icmp icmpv6 type { mld-listener-query, mld-listener-report, mld-listener-done, nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept';
const ALLOWED = `meta mark and ${hex(MARK.allow)} == ${hex(MARK.allow)}`;
const HOST_ACTION = { Drop: 'drop', Accept: 'accept', Return: 'return' } as const;

function fixedChains(hostAction: EndpointToHostAction): [string, string[]][] {
  return [
    ['from-wl', [...ESTABLISHED, CLEAR_MARK, 'iifname vmap @egress', `${ALLOWED} return`, 'drop']],
    ['to-wl', [...ESTABLISHED, CLEAR_MARK, 'oifname vmap @ingress', `${ALLOWED} accept`, 'drop']],
    ['wl-to-host', [...ESTABLISHED, NEIGHBOUR_DISCOVERY, CLEAR_MARK, 'iifname vmap @egress', `${ALLOWED} ${HOST_ACTION[hostAction]}`, 'drop']],
  ];
}

const BASE_CHAINS = [
  ['forward', 'type filter hook forward priority filter; policy accept;', ['iifname "cali*" jump from-wl', 'oifname "cali*" jump to-wl']],
  ['input', 'type filter hook input priority filter; policy accept;', ['iifname "cali*" goto wl-to-host']],
] as const;

function setDeclaration(set: NftSet): string {
  return `type ${set.version === 4 ? 'ipv4_addr' : 'ipv6_addr'};${set.interval ? ' flags interval; auto-merge;' : ''}`;
}

const quote = (name: string) => `"${name}"`;

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
  const lines = [`table ${TABLE}`, `delete table ${TABLE}`, `table ${TABLE} {`];
  for (const [name, set] of ruleset.sets) lines.push(`  set ${name} { ${setDeclaration(set)} }`);
  lines.push('  map ingress { type ifname : verdict; }', '  map egress { type ifname : verdict; }');
  for (const name of ruleset.chains.keys()) lines.push(`  chain ${name} { }`);
  for (const [name, rules] of fixedChains(ruleset.hostAction)) lines.push(`  chain ${name} {`, ...rules.map((r) => `    ${r}`), '  }');
  for (const [name, hook, rules] of BASE_CHAINS) lines.push(`  chain ${name} {`, `    ${hook}`, ...rules.map((r) => `    ${r}`), '  }');
  lines.push('}');
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
    if (!before) lines.push(`add set ${TABLE} ${name} { ${setDeclaration(after)} }`);
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
  if (touched.hostAction && programmed.hostAction !== wanted.hostAction) {
    const [, rules] = fixedChains(wanted.hostAction).find(([name]) => name === 'wl-to-host')!;
    lines.push(`flush chain ${TABLE} wl-to-host`, ...rules.map((r) => `add rule ${TABLE} wl-to-host ${r}`));
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
    if (set) target.sets.set(name, { ...set, elements: new Set(set.elements) });
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
  target.hostAction = source.hostAction;
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
