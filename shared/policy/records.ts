/**
 * Datastore records as the policy calculator takes them: one etcd key and value in, one change to
 * the calculator out. Anything malformed is refused with the key and the field, so the caller
 * can log it and go on (the rest stays enforced), and contained so that it opens nothing.
 */
import { MalformedDataError, type KeyLayout, type ResourceKind } from '../datastore';
import { CalicoError } from '../errors';
import { parseBoundedJson } from '../json';
import { parseCidr, type Cidr } from '../net';
import { ADDRESS_BITS, formatAddress, parseAddress } from '../net/address';
import type { EndpointRecord, HostRecord, PolicyCalculator } from './calculator';
import type { Interner } from './interner';
import { DEFAULT_FELIX_SETTINGS } from './model';
import { PolicyValidationError, quarantinedPolicy, quarantinedProfile, validateFelixConfiguration, validatePolicy, validateProfile } from './validate';

/** Host interface names as Linux allows them (and as nothing else can be slipped into a script). */
const INTERFACE_NAME = /^[a-zA-Z0-9_.-]{1,15}$/;

type Json = Record<string, unknown>;

/** The kinds that make up policy; records of other kinds are none of its business. */
export const POLICY_KINDS: readonly ResourceKind[] = ['FelixConfiguration', 'Node', 'Profile', 'GlobalNetworkPolicy', 'NetworkPolicy', 'WorkloadEndpoint'];

/** The field `at` + `name` of `object`, checked; else an error naming the key and the field. */
function field<T>(key: string, object: Json, name: string, check: (v: unknown) => v is T, expected: string, at = ''): T {
  const value = object[name];
  if (!check(value)) throw new MalformedDataError(key, `field "${at}${name}" must be ${expected}`);
  return value;
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString);
const isStringMap = (v: unknown): v is Record<string, string> => isObject(v) && Object.values(v).every(isString);

/** A list of CIDRs of a record, each checked; `hostsOnly`: /32 and /128 only. */
function cidrList(key: string, spec: Json, name: string, hostsOnly: boolean): Cidr[] {
  if (spec[name] === undefined || spec[name] === null) return [];
  return field(key, spec, name, isStringList, 'a list of strings', 'spec.').map((text, i) => {
    let cidr: Cidr;
    try {
      cidr = parseCidr(text, `spec.${name}[${i}]`);
    } catch (err) {
      throw new MalformedDataError(key, (err as Error).message);
    }
    if (hostsOnly && cidr.prefix !== ADDRESS_BITS[cidr.version]) throw new MalformedDataError(key, `field "spec.${name}[${i}]" holds ${text}: only /32 and /128 are endpoint addresses`);
    return cidr;
  });
}

function endpointRecord(key: string, namespace: string, document: Json, interner: Interner): EndpointRecord {
  const metadata = field(key, document, 'metadata', isObject, 'an object');
  const spec = field(key, document, 'spec', isObject, 'an object');
  const interfaceName = field(key, spec, 'interfaceName', isString, 'a string', 'spec.');
  if (!INTERFACE_NAME.test(interfaceName)) throw new MalformedDataError(key, `field "spec.interfaceName" ${JSON.stringify(interfaceName.slice(0, 40))} is not an interface name`);
  const addresses = cidrList(key, spec, 'ipNetworks', true).map((cidr) => ({ version: cidr.version, text: formatAddress({ version: cidr.version, value: cidr.network }) }));
  const labels = metadata.labels === undefined ? {} : field(key, metadata, 'labels', isStringMap, 'a map of strings', 'metadata.');
  const allowedSources = cidrList(key, spec, 'allowSpoofedSourcePrefixes', false);
  return {
    node: interner.string(field(key, spec, 'node', isString, 'a string', 'spec.')),
    namespace: interner.string(namespace),
    interfaceName,
    ipv4: addresses.filter((a) => a.version === 4).map((a) => a.text),
    ipv6: interner.list(addresses.filter((a) => a.version === 6).map((a) => a.text)),
    labels: interner.labels(labels),
    profiles: interner.list(spec.profiles === undefined ? [] : field(key, spec, 'profiles', isStringList, 'a list of strings', 'spec.')),
    ...(allowedSources.length > 0 ? { allowedSources } : {}),
  };
}

/** A Node as isolation needs it: its addresses, without their prefix lengths. */
function hostRecord(key: string, document: Json): HostRecord {
  const spec = document.spec === undefined ? {} : field(key, document, 'spec', isObject, 'an object');
  const bgp = spec.bgp === undefined ? {} : field(key, spec, 'bgp', isObject, 'an object', 'spec.');
  const address = (name: 'ipv4Address' | 'ipv6Address', version: 4 | 6): string | undefined => {
    if (bgp[name] === undefined || bgp[name] === '') return undefined;
    const text = field(key, bgp, name, isString, 'a string', 'spec.bgp.');
    try {
      const parsed = parseAddress(text.split('/')[0]!, `spec.bgp.${name}`);
      if (parsed.version !== version) throw new Error(`field "spec.bgp.${name}" holds an IPv${parsed.version} address`);
      return formatAddress(parsed);
    } catch (err) {
      throw new MalformedDataError(key, (err as Error).message);
    }
  };
  const ipv4 = address('ipv4Address', 4);
  const ipv6 = address('ipv6Address', 6);
  return { ...(ipv4 ? { ipv4 } : {}), ...(ipv6 ? { ipv6 } : {}) };
}

/** What became of a record: applied, or malformed and then kept at its last good version or quarantined. */
export type RecordOutcome = 'applied' | 'kept last good' | 'quarantined' | 'left out';

/**
 * Applies one record (or its deletion, when `value` is undefined) to the calculator.
 *
 * A record that does not check out never opens anything: its last good version stays in force (the
 * calculator's own, or, in a calculator being rebuilt, the one `previous` holds); one never read
 * good is quarantined: a policy denies everything to the endpoints its selector names (all of them
 * when even that is unreadable), ahead of every other policy; a profile denies its members. An
 * endpoint, Node or Felix configuration never read good is left out, which keeps it closed (an
 * unprogrammed interface passes nothing, an unknown host sends no tunnel packets, the defaults are
 * the strict ones). Its error is then thrown, naming the key and field, for the caller to log.
 */
export function applyRecord(calculator: PolicyCalculator, keys: KeyLayout, key: string, value: string | undefined, previous?: PolicyCalculator): RecordOutcome {
  const ref = keys.resourceOf(key);
  if (!ref || !POLICY_KINDS.includes(ref.kind)) return 'applied';
  const felix = ref.kind === 'FelixConfiguration' && ref.name === 'default';
  if (value === undefined) {
    switch (ref.kind) {
      case 'WorkloadEndpoint':
        calculator.setEndpoint(key, undefined);
        break;
      case 'Profile':
        calculator.setProfile(ref.name, undefined);
        break;
      case 'GlobalNetworkPolicy':
      case 'NetworkPolicy':
        calculator.setPolicy(key, undefined);
        break;
      case 'Node':
        calculator.setHost(key, undefined);
        break;
      case 'FelixConfiguration':
        if (felix) calculator.setFelixSettings(DEFAULT_FELIX_SETTINGS);
        break;
    }
    return 'applied';
  }
  let document: Json | undefined;
  try {
    const parsed = parseBoundedJson(value, key);
    if (!isObject(parsed)) throw new MalformedDataError(key, 'expected a JSON object');
    document = parsed;
    switch (ref.kind) {
      case 'WorkloadEndpoint':
        calculator.setEndpoint(key, endpointRecord(key, ref.namespace!, parsed, calculator.interner));
        break;
      case 'Profile':
        calculator.setProfile(ref.name, validateProfile(parsed));
        break;
      case 'GlobalNetworkPolicy':
      case 'NetworkPolicy':
        calculator.setPolicy(key, validatePolicy({ ...parsed, kind: ref.kind, metadata: { ...(isObject(parsed.metadata) ? parsed.metadata : {}), namespace: ref.namespace } }));
        break;
      case 'Node':
        calculator.setHost(key, hostRecord(key, parsed));
        break;
      case 'FelixConfiguration':
        if (felix) calculator.setFelixSettings(validateFelixConfiguration(parsed));
        break;
    }
    return 'applied';
  } catch (err) {
    const outcome = contain(calculator, previous, ref, key, document);
    throw Object.assign(malformed(key, err), { outcome });
  }
}

function malformed(key: string, err: unknown): CalicoError {
  if (err instanceof PolicyValidationError) return new MalformedDataError(key, err.message);
  if (err instanceof CalicoError) return err;
  if (err instanceof RangeError) return new MalformedDataError(key, 'nested too deeply to read');
  return new MalformedDataError(key, (err as Error).message);
}

/** Keeps a malformed record's last good version in force, or quarantines it (see applyRecord). */
function contain(calculator: PolicyCalculator, previous: PolicyCalculator | undefined, ref: { kind: ResourceKind; name: string; namespace?: string }, key: string, document: Json | undefined): RecordOutcome {
  switch (ref.kind) {
    case 'WorkloadEndpoint': {
      if (calculator.endpointRecord(key)) return 'kept last good';
      const last = previous?.endpointRecord(key);
      if (last) calculator.setEndpoint(key, last);
      return last ? 'kept last good' : 'left out';
    }
    case 'Profile': {
      if (calculator.profile(ref.name)) return 'kept last good';
      const last = previous?.profile(ref.name);
      calculator.setProfile(ref.name, last ?? quarantinedProfile(ref.name, document));
      return last ? 'kept last good' : 'quarantined';
    }
    case 'GlobalNetworkPolicy':
    case 'NetworkPolicy': {
      if (calculator.policy(key)) return 'kept last good';
      const last = previous?.policy(key);
      calculator.setPolicy(key, last ?? quarantinedPolicy(ref.kind, ref.name, ref.namespace, document));
      return last ? 'kept last good' : 'quarantined';
    }
    case 'Node': {
      if (calculator.host(key)) return 'kept last good';
      const last = previous?.host(key);
      if (last) calculator.setHost(key, last);
      return last ? 'kept last good' : 'left out';
    }
    case 'FelixConfiguration':
      if (ref.name === 'default' && previous) calculator.setFelixSettings(previous.felixSettings);
      return 'kept last good';
    default:
      return 'left out';
  }
}
