/**
 * From the JSON of a Calico v3 policy, profile or Felix configuration to the checked model of
 * model.ts, as Calico validates them. Every refusal names the field (`spec.ingress[0].source.ports[1]`)
 * and, for selectors, the position; calicoctl refuses such a resource, the daemon logs and skips it.
 */
import { CalicoError } from '../errors';
import { parseCidr, parseAddress, type Cidr, type IpVersion } from '../net';
import {
  DEFAULT_FELIX_SETTINGS,
  NAMESPACE_LABEL,
  NAMESPACE_NAME_LABEL,
  type Direction,
  type EndpointToHostAction,
  type FelixSettings,
  type IcmpMatch,
  type Policy,
  type PolicyRule,
  type PortRange,
  type Profile,
  type Protocol,
  type RuleAction,
  type RuleEnd,
} from './model';
import { SelectorSyntaxError, both, matches, parseSelector, type Selector } from './selector';

export class PolicyValidationError extends CalicoError {
  readonly code = 'POLICY_INVALID';

  constructor(
    readonly field: string,
    reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

type Json = unknown;
type JsonRecord = Record<string, Json>;

const isRecord = (v: Json): v is JsonRecord => typeof v === 'object' && v !== null && !Array.isArray(v);

function record(value: Json, field: string): JsonRecord {
  if (value === undefined || value === null) return {};
  if (!isRecord(value)) throw new PolicyValidationError(field, 'must be an object');
  return value;
}

function list(value: Json, field: string): Json[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new PolicyValidationError(field, 'must be a list');
  return value;
}

function only(object: JsonRecord, field: string, known: readonly string[], unsupported: Readonly<Record<string, string>> = {}): void {
  for (const [key, value] of Object.entries(object)) {
    if (value === undefined || value === null) continue;
    if (key in unsupported) throw new PolicyValidationError(`${field}${key}`, unsupported[key]!);
    if (!known.includes(key)) throw new PolicyValidationError(`${field}${key}`, `unknown field (known: ${known.join(', ')})`);
  }
}

function selector(value: Json, field: string): Selector | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new PolicyValidationError(field, 'must be a selector string');
  try {
    return parseSelector(value);
  } catch (err) {
    if (err instanceof SelectorSyntaxError) throw new PolicyValidationError(field, err.message);
    throw err;
  }
}

/** One of `choices`, matched without regard to case (Calico's canonical spelling is kept). */
function choice<T extends string>(value: Json, field: string, choices: readonly T[]): T {
  const found = typeof value === 'string' ? choices.find((c) => c.toLowerCase() === value.toLowerCase()) : undefined;
  if (found === undefined) throw new PolicyValidationError(field, `must be one of ${choices.join(', ')}, not ${JSON.stringify(value)}`);
  return found;
}

function integer(value: Json, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new PolicyValidationError(field, `must be a whole number from ${min} to ${max}, not ${JSON.stringify(value)}`);
  }
  return value;
}

const PROTOCOLS: Record<string, Protocol> = {
  tcp: { number: 6, name: 'TCP' },
  udp: { number: 17, name: 'UDP' },
  icmp: { number: 1, name: 'ICMP' },
  icmpv6: { number: 58, name: 'ICMPv6' },
  sctp: { number: 132, name: 'SCTP' },
  udplite: { number: 136, name: 'UDPLite' },
};
/** The protocols whose packets have ports. */
const PORTED = new Set([6, 17, 132, 136]);

function protocol(value: Json, field: string): Protocol | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string' && PROTOCOLS[value.toLowerCase()]) return PROTOCOLS[value.toLowerCase()];
  const number = typeof value === 'string' && /^\d{1,3}$/.test(value) ? Number(value) : value;
  if (typeof number !== 'number') throw new PolicyValidationError(field, `must be TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number from 1 to 255, not ${JSON.stringify(value)}`);
  const n = integer(number, field, 1, 255);
  return Object.values(PROTOCOLS).find((p) => p.number === n) ?? { number: n };
}

function port(value: Json, field: string): PortRange {
  if (typeof value === 'number') {
    const n = integer(value, field, 0, 65535);
    return { from: n, to: n };
  }
  if (typeof value === 'string') {
    const range = /^(\d{1,5})(?::(\d{1,5}))?$/.exec(value);
    if (!range) throw new PolicyValidationError(field, `must be a port number or a range "from:to", not ${JSON.stringify(value)} (named ports are not supported)`);
    const from = integer(Number(range[1]), field, 0, 65535);
    const to = range[2] === undefined ? from : integer(Number(range[2]), field, 0, 65535);
    if (from > to) throw new PolicyValidationError(field, `range "${value}" ends before it starts`);
    return { from, to };
  }
  throw new PolicyValidationError(field, `must be a port number or a range "from:to", not ${JSON.stringify(value)}`);
}

function net(value: Json, field: string): Cidr {
  if (typeof value !== 'string') throw new PolicyValidationError(field, 'must be a CIDR string');
  try {
    // Calico accepts a bare address (a /32 or /128) and host bits (masked).
    return value.includes('/') ? parseCidr(value, field, true) : parseCidr(`${value}/${parseAddress(value, field).version === 4 ? 32 : 128}`, field);
  } catch (err) {
    throw new PolicyValidationError(field, (err as Error).message);
  }
}

function icmp(value: Json, field: string): IcmpMatch | undefined {
  if (value === undefined || value === null) return undefined;
  const object = record(value, field);
  only(object, `${field}.`, ['type', 'code']);
  if (object.type === undefined) throw new PolicyValidationError(`${field}.type`, 'is required (a code alone matches nothing)');
  const type = integer(object.type, `${field}.type`, 0, 254);
  return object.code === undefined || object.code === null ? { type } : { type, code: integer(object.code, `${field}.code`, 0, 255) };
}

/** Where a rule's selectors look for endpoints: a NetworkPolicy's own namespace unless it says otherwise. */
interface SelectorScope {
  readonly namespace?: string;
}

function ruleEnd(value: Json, field: string, scope: SelectorScope): RuleEnd {
  const object = record(value, field);
  only(object, `${field}.`, ['nets', 'notNets', 'selector', 'notSelector', 'namespaceSelector', 'ports', 'notPorts'], {
    serviceAccounts: 'service accounts are not supported (there are none in Mesos)',
    services: 'service matches are not supported',
  });
  const namespaceSelector = selector(object.namespaceSelector, `${field}.namespaceSelector`);
  const endpointSelector = selector(object.selector, `${field}.selector`);
  const notSelector = selector(object.notSelector, `${field}.notSelector`);
  // As Calico: with a namespaceSelector the selectors look in the namespaces it picks, else a
  // NetworkPolicy's in its own namespace and a global policy's everywhere. A scoped rule that
  // names endpoints (a notSelector alone too) matches only endpoints of those namespaces;
  // notSelector itself only excludes, so it is not scoped. Unscoped, a notSelector alone matches
  // every address it does not name, endpoints' or not.
  const namespaces = namespaceSelector ? namespaceScope(namespaceSelector) : scope.namespace !== undefined ? ({ op: '==', key: NAMESPACE_LABEL, value: scope.namespace } as const) : undefined;
  const scoped = namespaces ? (endpointSelector || notSelector || namespaceSelector ? both(endpointSelector ?? { op: 'all' }, namespaces) : undefined) : endpointSelector;
  return {
    nets: list(object.nets, `${field}.nets`).map((n, i) => net(n, `${field}.nets[${i}]`)),
    notNets: list(object.notNets, `${field}.notNets`).map((n, i) => net(n, `${field}.notNets[${i}]`)),
    ...(scoped ? { selector: scoped } : {}),
    ...(notSelector ? { notSelector } : {}),
    ports: list(object.ports, `${field}.ports`).map((p, i) => port(p, `${field}.ports[${i}]`)),
    notPorts: list(object.notPorts, `${field}.notPorts`).map((p, i) => port(p, `${field}.notPorts[${i}]`)),
  };
}

/**
 * A selector over namespaces as one over endpoints: namespaces have only their name as a label
 * (projectcalico.org/name), which an endpoint carries as projectcalico.org/namespace.
 */
function namespaceScope(namespaceSelector: Selector): Selector {
  const rename = (s: Selector): Selector => {
    switch (s.op) {
      case 'all':
        return s;
      case '!':
        return { op: '!', operand: rename(s.operand) };
      case '&&':
      case '||':
        return { op: s.op, operands: s.operands.map(rename) };
      default:
        // Namespaces have no other labels: a test of another key is decided as for an absent label.
        if (s.key === NAMESPACE_NAME_LABEL) return { ...s, key: NAMESPACE_LABEL };
        return matches(s, {}) ? { op: 'all' } : { op: '!', operand: { op: 'all' } };
    }
  };
  return both({ op: 'has', key: NAMESPACE_LABEL }, rename(namespaceSelector));
}

function ipVersionOf(value: Json, field: string): IpVersion {
  if (value !== 4 && value !== 6) throw new PolicyValidationError(field, `must be 4 or 6, not ${JSON.stringify(value)}`);
  return value;
}

function rule(value: Json, field: string, scope: SelectorScope): PolicyRule {
  const object = record(value, field);
  only(object, `${field}.`, ['action', 'ipVersion', 'protocol', 'notProtocol', 'icmp', 'notICMP', 'source', 'destination', 'metadata'], {
    http: 'HTTP matches are not supported (they need an L7 proxy)',
  });
  const action = choice<RuleAction>(object.action, `${field}.action`, ['Allow', 'Deny', 'Log', 'Pass']);
  const ipVersion = object.ipVersion === undefined || object.ipVersion === null ? undefined : ipVersionOf(object.ipVersion, `${field}.ipVersion`);
  const proto = protocol(object.protocol, `${field}.protocol`);
  const notProto = protocol(object.notProtocol, `${field}.notProtocol`);
  const icmpMatch = icmp(object.icmp, `${field}.icmp`);
  const notIcmp = icmp(object.notICMP, `${field}.notICMP`);
  const source = ruleEnd(object.source, `${field}.source`, scope);
  const destination = ruleEnd(object.destination, `${field}.destination`, scope);

  for (const [end, name] of [[source, 'source'], [destination, 'destination']] as const) {
    if ((end.ports.length > 0 || end.notPorts.length > 0) && !(proto && PORTED.has(proto.number))) {
      throw new PolicyValidationError(`${field}.${name}.ports`, 'ports need protocol TCP, UDP, SCTP or UDPLite');
    }
    for (const [nets, netsName] of [[end.nets, 'nets'], [end.notNets, 'notNets']] as const) {
      const other = nets.find((n) => ipVersion !== undefined && n.version !== ipVersion);
      if (other) throw new PolicyValidationError(`${field}.${name}.${netsName}`, `holds an IPv${other.version} network but ipVersion is ${ipVersion}`);
    }
  }
  if (icmpMatch || notIcmp) {
    const icmpVersion = proto?.name === 'ICMP' ? 4 : proto?.name === 'ICMPv6' ? 6 : undefined;
    if (icmpVersion === undefined) throw new PolicyValidationError(`${field}.${icmpMatch ? 'icmp' : 'notICMP'}`, 'needs protocol ICMP or ICMPv6');
  }
  const protocolVersion = proto?.name === 'ICMP' ? 4 : proto?.name === 'ICMPv6' ? 6 : undefined;
  if (protocolVersion !== undefined && ipVersion !== undefined && protocolVersion !== ipVersion) {
    throw new PolicyValidationError(`${field}.ipVersion`, `is ${ipVersion} but protocol ${proto!.name} is IPv${protocolVersion}`);
  }
  return {
    action,
    ...(ipVersion ? { ipVersion } : {}),
    ...(proto ? { protocol: proto } : {}),
    ...(notProto ? { notProtocol: notProto } : {}),
    ...(icmpMatch ? { icmp: icmpMatch } : {}),
    ...(notIcmp ? { notICMP: notIcmp } : {}),
    source,
    destination,
  };
}

function rules(value: Json, field: string, scope: SelectorScope): PolicyRule[] {
  return list(value, field).map((r, i) => rule(r, `${field}[${i}]`, scope));
}

function name(metadata: JsonRecord, field: string): string {
  const n = metadata.name;
  if (typeof n !== 'string' || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(n) || n.length > 253) {
    throw new PolicyValidationError(`${field}name`, `must be lower-case letters, digits, "-" and ".", starting and ending with a letter or digit, not ${JSON.stringify(n)}`);
  }
  return n;
}

/** A GlobalNetworkPolicy or NetworkPolicy resource (the whole object: kind, metadata, spec). */
export function validatePolicy(resource: Json): Policy {
  const object = record(resource, 'policy');
  const kind = choice(object.kind, 'kind', ['GlobalNetworkPolicy', 'NetworkPolicy'] as const);
  const metadata = record(object.metadata, 'metadata');
  // Newer Calico stores policies of the default tier as "default.<name>": the same policy.
  const policyName = name(metadata, 'metadata.').replace(/^default\./, '');
  const namespace = kind === 'NetworkPolicy' ? (typeof metadata.namespace === 'string' && metadata.namespace ? metadata.namespace : 'default') : undefined;
  const spec = record(object.spec, 'spec');
  const refused = { doNotTrack: 'doNotTrack policies are not supported (workload policy only)', preDNAT: 'preDNAT policies are not supported (workload policy only)' };
  only(spec, 'spec.', ['order', 'selector', 'namespaceSelector', 'types', 'ingress', 'egress', 'applyOnForward', 'tier', 'doNotTrack', 'preDNAT'], {
    serviceAccountSelector: 'service accounts are not supported (there are none in Mesos)',
  });
  for (const [key, why] of Object.entries(refused)) if (spec[key] === true) throw new PolicyValidationError(`spec.${key}`, why);
  if (spec.tier !== undefined && spec.tier !== null && spec.tier !== 'default') throw new PolicyValidationError('spec.tier', 'only the default tier is supported');
  const order = spec.order === undefined || spec.order === null ? undefined : spec.order;
  if (order !== undefined && (typeof order !== 'number' || !Number.isFinite(order))) throw new PolicyValidationError('spec.order', `must be a number, not ${JSON.stringify(order)}`);

  const scope: SelectorScope = namespace !== undefined ? { namespace } : {};
  const ingress = rules(spec.ingress, 'spec.ingress', scope);
  const egress = rules(spec.egress, 'spec.egress', scope);
  const types = spec.types === undefined || spec.types === null
    ? defaultTypes(ingress.length > 0, egress.length > 0)
    : [...new Set(list(spec.types, 'spec.types').map((t, i) => choice(t, `spec.types[${i}]`, ['Ingress', 'Egress'] as const).toLowerCase() as Direction))];
  if (ingress.length > 0 && !types.includes('ingress')) throw new PolicyValidationError('spec.ingress', 'has rules but spec.types does not include Ingress');
  if (egress.length > 0 && !types.includes('egress')) throw new PolicyValidationError('spec.egress', 'has rules but spec.types does not include Egress');

  let applies = selector(spec.selector, 'spec.selector') ?? { op: 'all' as const };
  const namespaceSelector = selector(spec.namespaceSelector, 'spec.namespaceSelector');
  if (namespaceSelector) {
    if (namespace !== undefined) throw new PolicyValidationError('spec.namespaceSelector', 'is for global policies only');
    applies = both(applies, namespaceScope(namespaceSelector));
  }
  if (namespace !== undefined) applies = both(applies, { op: '==', key: NAMESPACE_LABEL, value: namespace });
  return { kind, name: policyName, ...(namespace !== undefined ? { namespace } : {}), ...(order !== undefined ? { order } : {}), selector: applies, types, ingress, egress };
}

/** Calico's defaults: Egress only when there are egress rules and no ingress rules; Ingress otherwise, plus Egress with egress rules. */
function defaultTypes(hasIngress: boolean, hasEgress: boolean): Direction[] {
  if (hasEgress && !hasIngress) return ['egress'];
  return hasEgress ? ['ingress', 'egress'] : ['ingress'];
}

/**
 * A policy's types as Calico writes them: the spec's own, else the default from the rules present
 * (calicoctl writes the defaulted value, and shows it for a policy written without).
 */
export function policyTypes(spec: Record<string, unknown>): ('Ingress' | 'Egress')[] {
  if (Array.isArray(spec.types) && spec.types.length > 0) return spec.types as ('Ingress' | 'Egress')[];
  const present = (rules: unknown) => Array.isArray(rules) && rules.length > 0;
  return defaultTypes(present(spec.ingress), present(spec.egress)).map((d) => (d === 'ingress' ? 'Ingress' : 'Egress'));
}

export function validateProfile(resource: Json): Profile {
  const object = record(resource, 'profile');
  const metadata = record(object.metadata, 'metadata');
  if (typeof metadata.name !== 'string' || metadata.name === '') throw new PolicyValidationError('metadata.name', 'is required');
  const spec = record(object.spec, 'spec');
  only(spec, 'spec.', ['ingress', 'egress', 'labelsToApply']);
  const labels = record(spec.labelsToApply, 'spec.labelsToApply');
  for (const [key, value] of Object.entries(labels)) if (typeof value !== 'string') throw new PolicyValidationError(`spec.labelsToApply.${key}`, 'must be a string');
  return {
    name: metadata.name,
    ingress: rules(spec.ingress, 'spec.ingress', {}),
    egress: rules(spec.egress, 'spec.egress', {}),
    labelsToApply: labels as Record<string, string>,
  };
}

function flag(value: Json, field: string, otherwise: boolean): boolean {
  if (value === undefined || value === null) return otherwise;
  if (typeof value !== 'boolean') throw new PolicyValidationError(field, `must be true or false, not ${JSON.stringify(value)}`);
  return value;
}

/** FelixConfiguration `default`: the fields we act on; others are Felix's and are left alone. */
export function validateFelixConfiguration(resource: Json): FelixSettings {
  const spec = record(record(resource, 'FelixConfiguration').spec, 'spec');
  const d = DEFAULT_FELIX_SETTINGS;
  const given = (name: string) => spec[name] !== undefined && spec[name] !== null;
  return {
    defaultEndpointToHostAction: given('defaultEndpointToHostAction') ? choice<EndpointToHostAction>(spec.defaultEndpointToHostAction, 'spec.defaultEndpointToHostAction', ['Drop', 'Accept', 'Return']) : d.defaultEndpointToHostAction,
    allowVXLANPacketsFromWorkloads: flag(spec.allowVXLANPacketsFromWorkloads, 'spec.allowVXLANPacketsFromWorkloads', d.allowVXLANPacketsFromWorkloads),
    allowIPIPPacketsFromWorkloads: flag(spec.allowIPIPPacketsFromWorkloads, 'spec.allowIPIPPacketsFromWorkloads', d.allowIPIPPacketsFromWorkloads),
    workloadSourceSpoofing: given('workloadSourceSpoofing') ? choice(spec.workloadSourceSpoofing, 'spec.workloadSourceSpoofing', ['Disabled', 'Any'] as const) : d.workloadSourceSpoofing,
    allowDatastoreAccessFromWorkloads: flag(spec.allowDatastoreAccessFromWorkloads, 'spec.allowDatastoreAccessFromWorkloads', d.allowDatastoreAccessFromWorkloads),
  };
}

const ANY_END: RuleEnd = { nets: [], notNets: [], ports: [], notPorts: [] };
const DENY_ALL: PolicyRule = { action: 'Deny', source: ANY_END, destination: ANY_END };

/**
 * A policy whose record never checked out, as it is enforced: before every other policy, it denies
 * everything both ways to the endpoints its selector names, or to all (of its namespace) when even
 * the selector is unreadable. What we cannot read, we do not open.
 */
export function quarantinedPolicy(kind: Policy['kind'], policyName: string, namespace: string | undefined, document: Json): Policy {
  const spec = isRecord(document) && isRecord(document.spec) ? document.spec : {};
  let applies: Selector = { op: 'all' };
  try {
    applies = selector(spec.selector, 'spec.selector') ?? applies;
  } catch {
    // unreadable: every endpoint
  }
  const scope = kind === 'NetworkPolicy' ? namespace ?? 'default' : undefined;
  if (scope !== undefined) applies = both(applies, { op: '==', key: NAMESPACE_LABEL, value: scope });
  return { kind, name: policyName, ...(scope !== undefined ? { namespace: scope } : {}), order: -Infinity, selector: applies, types: ['ingress', 'egress'], ingress: [DENY_ALL], egress: [DENY_ALL], quarantined: true };
}

/**
 * A profile whose record never checked out: its members are denied everything both ways (before
 * their other profiles); the labels it applies are kept where they can be read, so that no member
 * slips out of a selector that denies it.
 */
export function quarantinedProfile(profileName: string, document: Json): Profile {
  const spec = isRecord(document) && isRecord(document.spec) ? document.spec : {};
  const labels = isRecord(spec.labelsToApply) ? Object.fromEntries(Object.entries(spec.labelsToApply).filter((e): e is [string, string] => typeof e[1] === 'string')) : {};
  return { name: profileName, ingress: [DENY_ALL], egress: [DENY_ALL], labelsToApply: labels, quarantined: true };
}
