/**
 * The policy compiler against the reference evaluator (policy-reference.ts), with real packets:
 * random endpoints (labels, profiles), profiles and GlobalNetworkPolicies; the compiler's table
 * programmed into a host namespace with five workloads on `cali` veths and an "outside" namespace
 * (other hosts' workloads and addresses anywhere); random packets (family, source, destination,
 * protocol, ports, ICMP type) crafted whole and sent; whether each arrived is compared with the
 * reference's verdict. Each scenario's table is programmed whole or as the changes from the
 * previous one, alternately, so both ways the daemon programs are tried.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { Netns } from '../../sim/netns';
import { applyNftScript } from '../../shared/dataplane/nftables';
import { PolicyCalculator } from '../../shared/policy/calculator';
import { copyRuleset, planChanges, renderTable, type Ruleset } from '../../shared/policy/ruleset';
import { validatePolicy, validateProfile } from '../../shared/policy/validate';
import { ReferenceCluster, net, renderSelector, type Direction, type Family, type Packet, type RefEndpoint, type RefPolicy, type RefProfile, type RefRule, type RefRuleEnd, type SelectorTree } from './policy-reference';
import { Random } from '../../sim/random';

const SCRIPT = resolve('test/fixtures/packets.py');
const NODE = 'dhost';
const HOST_MAC = 'ee:ee:ee:ee:ee:ee';
const GATEWAY6 = 'fe80::ecee:eeff:feee:eeee';
const LOCAL_COUNT = 5;
const REMOTE_COUNT = 3;

// ---- the world: addresses ----

const localAddress = (i: number, family: Family) => (family === 4 ? `10.240.0.${10 + i}` : `fd00:240::${10 + i}`);
const remoteAddress = (i: number, family: Family) => (family === 4 ? `10.241.0.${10 + i}` : `fd00:241::${10 + i}`);
/** Addresses that are nobody's endpoint, inside and outside the nets rules name. */
const OUTSIDERS: Record<Family, readonly string[]> = { 4: ['10.242.1.5', '10.242.200.9', '192.0.2.77', '198.51.100.3'], 6: ['fd00:242::5', 'fd00:242:0:1::9', '2001:db8::77'] };
/** The nets rules name: the workloads', the outsiders', and wider ones. */
const NETS: Record<Family, readonly string[]> = {
  4: ['10.240.0.0/24', '10.240.0.10/31', '10.240.0.12/32', '10.241.0.0/24', '10.242.0.0/16', '192.0.2.0/24', '10.0.0.0/8', '0.0.0.0/0'],
  6: ['fd00:240::/64', 'fd00:240::a/127', 'fd00:241::/64', 'fd00:242::/48', '2001:db8::/32', '::/0'],
};

// ---- random resources, as Calico JSON and as the reference sees them ----

const KEYS = ['app', 'tier', 'env'] as const;
const VALUES: Record<(typeof KEYS)[number], readonly string[]> = { app: ['web', 'db', 'cache'], tier: ['front', 'back'], env: ['prod', 'dev'] };
const PROFILES = ['pa', 'pb', 'pc'] as const;

function randomSelector(r: Random, depth = 0): SelectorTree {
  const roll = r.int(depth > 1 ? 6 : 9);
  const key = r.pick([...KEYS, 'pcn.pa', 'pcn.pb']);
  const value = key.startsWith('pcn.') ? '' : r.pick(VALUES[key as (typeof KEYS)[number]]);
  switch (roll) {
    case 0:
      return { op: 'all' };
    case 1:
      return { op: 'has', key };
    case 2:
    case 3:
      return { op: '==', key, value };
    case 4:
      return { op: '!=', key, value };
    case 5:
      return key.startsWith('pcn.') ? { op: 'has', key } : { op: r.pick(['in', 'not in'] as const), key, values: r.some(VALUES[key as (typeof KEYS)[number]], 0.6) };
    case 6:
      return { op: '!', operand: randomSelector(r, depth + 1) };
    default:
      return { op: r.pick(['&&', '||'] as const), left: randomSelector(r, depth + 1), right: randomSelector(r, depth + 1) };
  }
}

interface GeneratedRule {
  readonly json: Record<string, unknown>;
  readonly ref: RefRule;
}

function randomEnd(r: Random, ported: boolean): { json: Record<string, unknown>; ref: RefRuleEnd } {
  const json: Record<string, unknown> = {};
  const ref: { -readonly [K in keyof RefRuleEnd]: RefRuleEnd[K] } = {};
  const nets = (): string[] => {
    const families = r.chance(0.3) ? [4, 6] as const : [r.pick([4, 6] as const)];
    return families.flatMap((f) => r.some(NETS[f], 0.25).slice(0, 2)).filter((v, i, all) => all.indexOf(v) === i);
  };
  if (r.chance(0.25)) {
    const list = nets();
    if (list.length > 0) [json.nets, ref.nets] = [list, list.map(net)];
  }
  if (r.chance(0.2)) {
    const list = nets();
    if (list.length > 0) [json.notNets, ref.notNets] = [list, list.map(net)];
  }
  if (r.chance(0.3)) {
    const s = randomSelector(r);
    [json.selector, ref.selector] = [renderSelector(s), s];
  }
  if (r.chance(0.12)) {
    const s = randomSelector(r);
    [json.notSelector, ref.notSelector] = [renderSelector(s), s];
  }
  if (ported && r.chance(0.4)) {
    const ports = r.some([53, 80, 443, 8080], 0.4);
    if (r.chance(0.4)) ports.push(0);
    const ranges = ports.map((p) => (p === 0 ? { from: 1000, to: 1999 } : { from: p, to: p }));
    if (ranges.length > 0) [json.ports, ref.ports] = [ranges.map((x) => (x.from === x.to ? x.from : `${x.from}:${x.to}`)), ranges];
  }
  if (ported && r.chance(0.15)) {
    const ranges = [r.pick([{ from: 80, to: 80 }, { from: 1500, to: 2500 }, { from: 53, to: 53 }])];
    [json.notPorts, ref.notPorts] = [ranges.map((x) => (x.from === x.to ? x.from : `${x.from}:${x.to}`)), ranges];
  }
  return { json, ref };
}

function randomRule(r: Random, actions: readonly RefRule['action'][]): GeneratedRule {
  const action = r.pick(actions);
  const json: Record<string, unknown> = { action };
  const ref: { -readonly [K in keyof RefRule]: RefRule[K] } = { action, source: {}, destination: {} };
  const ipVersion = r.chance(0.15) ? r.pick([4, 6] as const) : undefined;
  if (ipVersion) [json.ipVersion, ref.ipVersion] = [ipVersion, ipVersion];
  const protocols = ipVersion === 6 ? ['TCP', 'UDP', 'ICMPv6', 253] : ipVersion === 4 ? ['TCP', 'UDP', 'ICMP', 253] : ['TCP', 'UDP', 'ICMP', 'ICMPv6', 253];
  const protocol = r.chance(0.55) ? r.pick(protocols) : undefined;
  const number = (p: string | number) => ({ TCP: 6, UDP: 17, ICMP: 1, ICMPv6: 58 })[p as string] ?? (p as number);
  if (protocol !== undefined) [json.protocol, ref.protocol] = [protocol, number(protocol)];
  else if (r.chance(0.15)) {
    const not = r.pick(['TCP', 'UDP', 253]);
    [json.notProtocol, ref.notProtocol] = [not, number(not)];
  }
  if (protocol === 'ICMP' || protocol === 'ICMPv6') {
    const match = () => {
      const type = protocol === 'ICMP' ? r.pick([8, 13, 0]) : r.pick([128, 129]);
      return r.chance(0.5) ? { type, code: r.pick([0, 1]) } : { type };
    };
    if (r.chance(0.4)) {
      const m = match();
      [json.icmp, ref.icmp] = [m, m];
    } else if (r.chance(0.25)) {
      const m = match();
      [json.notICMP, ref.notICMP] = [m, m];
    }
  }
  const ported = protocol === 'TCP' || protocol === 'UDP';
  const source = randomEnd(r, ported);
  const destination = randomEnd(r, ported);
  // A rule whose nets contradict its ipVersion is refused by validation: keep only its family.
  for (const end of [source, destination]) {
    for (const field of ['nets', 'notNets'] as const) {
      if (!ipVersion || !end.ref[field]) continue;
      const kept = end.ref[field]!.filter((n) => n.family === ipVersion);
      if (kept.length === 0) {
        delete end.json[field];
        delete (end.ref as Record<string, unknown>)[field];
      } else {
        end.json[field] = kept.map((n) => n.text);
        (end.ref as Record<string, unknown>)[field] = kept;
      }
    }
  }
  if (Object.keys(source.json).length > 0) json.source = source.json;
  if (Object.keys(destination.json).length > 0) json.destination = destination.json;
  ref.source = source.ref;
  ref.destination = destination.ref;
  return { json, ref };
}

export interface Scenario {
  readonly endpoints: { readonly key: string; readonly local: number | undefined; readonly ref: RefEndpoint; readonly interfaceName: string }[];
  readonly policies: { readonly json: Record<string, unknown>; readonly ref: RefPolicy }[];
  readonly profiles: { readonly json: Record<string, unknown>; readonly ref: RefProfile }[];
}

export function randomScenario(r: Random): Scenario {
  const endpoints: Scenario['endpoints'][number][] = [];
  for (let i = 0; i < LOCAL_COUNT + REMOTE_COUNT; i++) {
    const local = i < LOCAL_COUNT ? i : undefined;
    const labels: Record<string, string> = {};
    for (const key of KEYS) if (r.chance(0.6)) labels[key] = r.pick(VALUES[key]);
    const profiles = r.some(PROFILES, 0.45);
    if (profiles.length === 0) profiles.push(r.pick(PROFILES));
    const addresses = local !== undefined ? [localAddress(local, 4), localAddress(local, 6)] : [remoteAddress(i - LOCAL_COUNT, 4), remoteAddress(i - LOCAL_COUNT, 6)];
    endpoints.push({ key: `ep${i}`, local, interfaceName: local !== undefined ? `calidiff${local}` : `caliremote${i}`, ref: { namespace: 'default', labels, profiles, addresses } });
  }
  const profiles = PROFILES.map((name) => {
    // A network's profile lets much through: often it ends in an Allow of everything.
    const rules = () => [...Array.from({ length: r.int(3) }, () => randomRule(r, ['Allow', 'Allow', 'Deny', 'Log'])), ...(r.chance(0.5) ? [{ json: { action: 'Allow' }, ref: { action: 'Allow' as const, source: {}, destination: {} } }] : [])];
    const ingress = rules();
    const egress = rules();
    const labelsToApply = r.chance(0.8) ? { [`pcn.${name}`]: '' } : {};
    return {
      json: { kind: 'Profile', metadata: { name }, spec: { labelsToApply, ingress: ingress.map((x) => x.json), egress: egress.map((x) => x.json) } },
      ref: { name, labelsToApply, ingress: ingress.map((x) => x.ref), egress: egress.map((x) => x.ref) },
    };
  });
  const policies = Array.from({ length: r.int(5) }, (_, i) => {
    const name = `p${i}`;
    const selector = randomSelector(r);
    const ingress = Array.from({ length: r.int(4) }, () => randomRule(r, ['Allow', 'Deny', 'Pass', 'Log']));
    const egress = Array.from({ length: r.int(4) }, () => randomRule(r, ['Allow', 'Deny', 'Pass', 'Log']));
    const order = r.chance(0.8) ? r.pick([1, 5, 10, 10, 100]) : undefined;
    // Types as written, or left to Calico's default (from the rules present).
    const listed = [...new Set([...(ingress.length > 0 ? ['Ingress'] : []), ...(egress.length > 0 ? ['Egress'] : []), ...r.some(['Ingress', 'Egress'], 0.3)])] as ('Ingress' | 'Egress')[];
    const written = r.chance(0.6) && listed.length > 0 ? listed : undefined;
    // Calico's default when no types are written: Egress alone for egress rules alone, else Ingress (and Egress with egress rules).
    const types: Direction[] = written ? written.map((t) => t.toLowerCase() as Direction) : egress.length > 0 && ingress.length === 0 ? ['egress'] : egress.length > 0 ? ['ingress', 'egress'] : ['ingress'];
    const spec: Record<string, unknown> = { selector: renderSelector(selector), ingress: ingress.map((x) => x.json), egress: egress.map((x) => x.json) };
    if (order !== undefined) spec.order = order;
    if (written) spec.types = written;
    return {
      json: { kind: 'GlobalNetworkPolicy', metadata: { name }, spec },
      ref: { name, ...(order !== undefined ? { order } : {}), selector, types, ingress: ingress.map((x) => x.ref), egress: egress.map((x) => x.ref) },
    };
  });
  return { endpoints, policies, profiles };
}

/** The scenario in a calculator, as the policy keeper would take it from the datastore. */
function calculatorOf(scenario: Scenario): PolicyCalculator {
  const calc = new PolicyCalculator(NODE);
  for (const { json } of scenario.profiles) calc.setProfile(String((json.metadata as { name: string }).name), validateProfile(json));
  for (const { json } of scenario.policies) calc.setPolicy(`/gnp/${(json.metadata as { name: string }).name}`, validatePolicy(json));
  for (const e of scenario.endpoints) {
    calc.setEndpoint(e.key, {
      node: e.local !== undefined ? NODE : 'other',
      namespace: e.ref.namespace,
      interfaceName: e.interfaceName,
      ipv4: e.ref.addresses.filter((a) => !a.includes(':')),
      ipv6: e.ref.addresses.filter((a) => a.includes(':')),
      labels: e.ref.labels,
      profiles: e.ref.profiles,
    });
  }
  return calc;
}

// ---- packets ----

interface Case {
  readonly id: string;
  readonly packet: Packet;
  /** Where it is sent from: a local workload's index, or the outside. */
  readonly from: number | 'outside';
  /** Where it arrives if delivered: a local workload's index, or the outside. */
  readonly to: number | 'outside';
  readonly expected: boolean;
}

class Cases {
  private counter = 0;
  /** Generic-protocol (source, destination) pairs sent: the reverse of one would be conntrack's reply. */
  private readonly generic = new Set<string>();

  constructor(private readonly r: Random) {}

  next(scenario: Scenario, reference: ReferenceCluster, label: string): Case | undefined {
    const r = this.r;
    const family = r.pick([4, 6] as const);
    const kinds = ['local', 'remote', 'outsider'] as const;
    const fromKind = r.pick(kinds);
    const toKind = fromKind === 'local' ? r.pick(kinds) : 'local';
    const locals = scenario.endpoints.filter((e) => e.local !== undefined);
    const remotes = scenario.endpoints.filter((e) => e.local === undefined);
    const endpointOf = (kind: (typeof kinds)[number]) => (kind === 'local' ? r.pick(locals) : kind === 'remote' ? r.pick(remotes) : undefined);
    const fromEndpoint = endpointOf(fromKind);
    let toEndpoint = endpointOf(toKind);
    if (toEndpoint && toEndpoint === fromEndpoint) toEndpoint = locals[(locals.indexOf(toEndpoint) + 1) % locals.length];
    const addressOf = (e: typeof fromEndpoint) => (e ? e.ref.addresses.find((a) => a.includes(':') === (family === 6))! : r.pick(OUTSIDERS[family]));
    const src = addressOf(fromEndpoint);
    const dst = addressOf(toEndpoint);
    const proto = r.pick([6, 17, family === 4 ? 1 : 58, 253]);
    if (proto === 253) {
      if (this.generic.has(`${dst}|${src}`)) return undefined;
      this.generic.add(`${src}|${dst}`);
    }
    const serial = this.counter++;
    const packet: Packet = {
      family,
      src,
      dst,
      proto,
      sport: 20000 + (serial % 40000),
      dport: r.pick([53, 80, 443, 8080, 1000 + r.int(1000), 3000 + r.int(100)]),
      ...(proto === 1 ? { icmp: [r.pick([8, 13]), r.pick([0, 0, 1])] as const } : proto === 58 ? { icmp: [128, r.pick([0, 0, 1])] as const } : {}),
    };
    const local = (e: typeof fromEndpoint) => (e?.local !== undefined ? e.ref : undefined);
    return {
      id: `${label}${serial.toString(36)}`,
      packet,
      from: fromEndpoint?.local ?? 'outside',
      to: toEndpoint?.local ?? 'outside',
      expected: reference.delivers(local(fromEndpoint), local(toEndpoint), packet),
    };
  }
}

// ---- the namespaces ----

export class DifferentialWorld {
  private captures: { process: ChildProcess; output: Promise<string> }[] = [];
  private programmed: Ruleset | undefined;
  private calc: PolicyCalculator | undefined;

  private constructor(
    readonly host: Netns,
    readonly outside: Netns,
    readonly workloads: Netns[],
  ) {}

  static async create(): Promise<DifferentialWorld> {
    const host = await Netns.create('dhost');
    const outside = await Netns.create('dout');
    const workloads: Netns[] = [];
    const world = new DifferentialWorld(host, outside, workloads);
    try {
      await host.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', outside.name);
      for (const [ns, v4, v6] of [[host, '10.250.0.1/24', 'fd00:250::1/64'], [outside, '10.250.0.2/24', 'fd00:250::2/64']] as const) {
        await ns.ip('addr', 'add', v4, 'dev', 'eth0');
        await ns.ip('-6', 'addr', 'add', v6, 'dev', 'eth0', 'nodad');
        await ns.ip('link', 'set', 'eth0', 'up');
      }
      // Neighbours known from the start: a burst sent before one is resolved would be dropped by the kernel's small queue.
      const macOf = async (ns: Netns) => (await ns.json<{ address: string }[]>('link', 'show', 'eth0'))[0]!.address;
      const [hostMac, outsideMac] = [await macOf(host), await macOf(outside)];
      for (const [ns, v4, v6, mac] of [[host, '10.250.0.2', 'fd00:250::2', outsideMac], [outside, '10.250.0.1', 'fd00:250::1', hostMac]] as const) {
        await ns.ip('neigh', 'replace', v4, 'lladdr', mac, 'dev', 'eth0', 'nud', 'permanent');
        await ns.ip('-6', 'neigh', 'replace', v6, 'lladdr', mac, 'dev', 'eth0', 'nud', 'permanent');
      }
      for (const range of ['10.241.0.0/24', '10.242.0.0/16', '192.0.2.0/24', '198.51.100.0/24']) await host.ip('route', 'add', range, 'via', '10.250.0.2');
      for (const range of ['fd00:241::/64', 'fd00:242::/48', '2001:db8::/32']) await host.ip('-6', 'route', 'add', range, 'via', 'fd00:250::2');
      await outside.ip('route', 'add', '10.240.0.0/24', 'via', '10.250.0.1');
      await outside.ip('-6', 'route', 'add', 'fd00:240::/64', 'via', 'fd00:250::1');
      await host.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.eth0.rp_filter=0']);
      for (let i = 0; i < LOCAL_COUNT; i++) {
        const ns = await Netns.create(`dwl${i}`);
        workloads.push(ns);
        const hostIf = `calidiff${i}`;
        await host.ip('link', 'add', hostIf, 'address', HOST_MAC, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name);
        await host.ip('link', 'set', hostIf, 'up');
        await ns.ip('link', 'set', 'eth0', 'up');
        await ns.ip('addr', 'add', `${localAddress(i, 4)}/32`, 'dev', 'eth0');
        await ns.ip('-6', 'addr', 'add', `${localAddress(i, 6)}/128`, 'dev', 'eth0', 'nodad');
        await ns.ip('route', 'add', '169.254.1.1', 'dev', 'eth0', 'scope', 'link');
        await ns.ip('route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0');
        await ns.ip('neigh', 'replace', '169.254.1.1', 'lladdr', HOST_MAC, 'dev', 'eth0', 'nud', 'permanent');
        await ns.ip('-6', 'neigh', 'replace', GATEWAY6, 'lladdr', HOST_MAC, 'dev', 'eth0', 'nud', 'permanent');
        await ns.ip('-6', 'route', 'add', 'default', 'via', GATEWAY6, 'dev', 'eth0');
        const mac = (await ns.json<{ address: string }[]>('link', 'show', 'eth0'))[0]!.address;
        await host.ip('route', 'add', `${localAddress(i, 4)}/32`, 'dev', hostIf, 'scope', 'link');
        await host.ip('-6', 'route', 'add', `${localAddress(i, 6)}/128`, 'dev', hostIf);
        await host.ip('neigh', 'replace', localAddress(i, 4), 'lladdr', mac, 'dev', hostIf, 'nud', 'permanent');
        await host.ip('-6', 'neigh', 'replace', localAddress(i, 6), 'lladdr', mac, 'dev', hostIf, 'nud', 'permanent');
        await host.exec('sysctl', ['-qw', `net.ipv4.conf.${hostIf}.proxy_arp=1`, `net.ipv4.conf.${hostIf}.rp_filter=0`]);
      }
    } catch (err) {
      await world.destroy();
      throw err;
    }
    return world;
  }

  /** Starts a capture on every workload's eth0 and the outside's, for at most `seconds`. */
  async startCaptures(seconds: number): Promise<void> {
    const start = (ns: Netns) => {
      const child = spawn('nsenter', [`--net=${ns.path}`, '/usr/bin/python3', SCRIPT, 'capture', 'eth0', String(seconds)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      const ready = new Promise<void>((done) => child.stdout!.on('data', (d) => {
        out += d;
        if (out.startsWith('ready\n')) done();
      }));
      const output = new Promise<string>((done) => child.on('exit', () => done(out)));
      this.captures.push({ process: child, output });
      return ready;
    };
    await Promise.all([...this.workloads, this.outside].map(start));
  }

  /** Stops the captures; what each saw, by where: a workload's index, or "outside". */
  async stopCaptures(): Promise<Map<number | 'outside', Set<string>>> {
    for (const c of this.captures) c.process.kill('SIGTERM');
    const outputs = await Promise.all(this.captures.map((c) => c.output));
    this.captures = [];
    const seen = new Map<number | 'outside', Set<string>>();
    outputs.forEach((text, i) => seen.set(i < this.workloads.length ? i : 'outside', new Set(text.split('\n').slice(1).map((l) => l.trim()).filter(Boolean))));
    return seen;
  }

  /** Programs the scenario's table: whole, or as the changes from the last one. */
  async program(scenario: Scenario, incremental: boolean): Promise<void> {
    const calc = calculatorOf(scenario);
    if (incremental && this.programmed && this.calc) {
      // The same state reached from the previous calculator, change by change.
      const previous = this.calc;
      for (const e of scenario.endpoints) previous.setEndpoint(e.key, calc.endpointRecord(e.key));
      for (const name of PROFILES) previous.setProfile(name, calc.profile(name));
      for (let i = 0; i < 5; i++) previous.setPolicy(`/gnp/p${i}`, calc.policy(`/gnp/p${i}`));
      const plan = planChanges(this.programmed, previous.ruleset, previous.takeTouched());
      await applyNftScript('update the table', plan.script, { netns: this.host.path });
      plan.commit();
      return;
    }
    calc.takeTouched();
    await applyNftScript('program the table', renderTable(calc.ruleset), { netns: this.host.path });
    this.calc = calc;
    this.programmed = copyRuleset(calc.ruleset);
  }

  /** Sends each case from where it comes (a workload's namespace, or the outside). */
  async send(cases: readonly Case[]): Promise<void> {
    const bySender = new Map<number | 'outside', Case[]>();
    for (const c of cases) bySender.set(c.from, [...(bySender.get(c.from) ?? []), c]);
    await Promise.all([...bySender].map(([from, list]) => new Promise<void>((done, fail) => {
      const ns = from === 'outside' ? this.outside : this.workloads[from]!;
      const child = spawn('nsenter', [`--net=${ns.path}`, '/usr/bin/python3', SCRIPT, 'craft'], { stdio: ['pipe', 'ignore', 'inherit'] });
      child.on('exit', (code) => (code === 0 ? done() : fail(new Error(`craft exited ${code}`))));
      child.stdin!.end(list.map((c) => JSON.stringify({ ...c.packet, id: c.id })).join('\n'));
    })));
  }

  async destroy(): Promise<void> {
    for (const c of this.captures) c.process.kill('SIGKILL');
    for (const ns of [...this.workloads, this.outside, this.host]) await ns.destroy();
  }
}

export interface Disagreement {
  readonly id: string;
  readonly packet: Packet;
  readonly from: number | 'outside';
  readonly to: number | 'outside';
  readonly expected: boolean;
  readonly delivered: boolean;
  readonly scenario: Scenario;
}

/** Runs `scenarios` random scenarios of `perScenario` packets each; returns the cases run and every disagreement. */
export async function runDifferential(seed: number, scenarios: number, perScenario: number): Promise<{ cases: number; delivered: number; disagreements: Disagreement[] }> {
  const r = new Random(seed);
  const world = await DifferentialWorld.create();
  try {
    await world.startCaptures(scenarios * 3 + 60);
    const all: { c: Case; scenario: Scenario }[] = [];
    const cases = new Cases(r);
    for (let s = 0; s < scenarios; s++) {
      const scenario = randomScenario(r);
      const reference = new ReferenceCluster(scenario.endpoints.map((e) => e.ref), scenario.policies.map((p) => p.ref), scenario.profiles.map((p) => p.ref));
      await world.program(scenario, s % 2 === 1);
      const batch: Case[] = [];
      while (batch.length < perScenario) {
        const c = cases.next(scenario, reference, `s${s.toString(36)}x`);
        if (c) batch.push(c);
      }
      await world.send(batch);
      // Delivery takes microseconds; the captures print as they see.
      await new Promise((done) => setTimeout(done, 150));
      all.push(...batch.map((c) => ({ c, scenario })));
    }
    await new Promise((done) => setTimeout(done, 300));
    const seen = await world.stopCaptures();
    const disagreements: Disagreement[] = [];
    let delivered = 0;
    for (const { c, scenario } of all) {
      const arrived = seen.get(c.to)?.has(c.id) ?? false;
      if (arrived) delivered++;
      if (arrived !== c.expected) disagreements.push({ id: c.id, packet: c.packet, from: c.from, to: c.to, expected: c.expected, delivered: arrived, scenario });
    }
    return { cases: all.length, delivered, disagreements };
  } finally {
    await world.destroy();
  }
}

/** A disagreement as a reader needs it: the packet, both verdicts, and the rules in force. */
export function describe(d: Disagreement): string {
  return JSON.stringify({ id: d.id, packet: d.packet, from: d.from, to: d.to, expected: d.expected, delivered: d.delivered, endpoints: d.scenario.endpoints.map((e) => ({ key: e.key, local: e.local, ...e.ref })), profiles: d.scenario.profiles.map((p) => p.json), policies: d.scenario.policies.map((p) => p.json) }, null, 1);
}

