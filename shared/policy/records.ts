/**
 * Datastore records as the policy calculator takes them: one etcd key and value in, one change to
 * the calculator out. Anything malformed is refused with the key and the field, so the caller
 * can log it and go on without it (the rest stays enforced).
 */
import { MalformedDataError, type KeyLayout, type ResourceKind } from '../datastore';
import { CalicoError } from '../errors';
import { parseCidr } from '../net';
import { formatAddress } from '../net/address';
import type { EndpointRecord, PolicyCalculator } from './calculator';
import { DEFAULT_FELIX_SETTINGS } from './model';
import { PolicyValidationError, validateFelixConfiguration, validatePolicy, validateProfile } from './validate';

/** Host interface names as Linux allows them (and as nothing else can be slipped into a script). */
const INTERFACE_NAME = /^[a-zA-Z0-9_.-]{1,15}$/;

type Json = Record<string, unknown>;

/** The kinds that make up policy; records of other kinds are none of its business. */
export const POLICY_KINDS: readonly ResourceKind[] = ['FelixConfiguration', 'Profile', 'GlobalNetworkPolicy', 'NetworkPolicy', 'WorkloadEndpoint'];

function field<T>(key: string, object: Json, name: string, check: (v: unknown) => v is T, expected: string): T {
  const value = object[name];
  if (!check(value)) throw new MalformedDataError(key, `field "${name}" must be ${expected}`);
  return value;
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString);
const isStringMap = (v: unknown): v is Record<string, string> => isObject(v) && Object.values(v).every(isString);

function endpointRecord(key: string, namespace: string, document: Json): EndpointRecord {
  const metadata = field(key, document, 'metadata', isObject, 'an object');
  const spec = field(key, document, 'spec', isObject, 'an object');
  const interfaceName = field(key, spec, 'interfaceName', isString, 'a string');
  if (!INTERFACE_NAME.test(interfaceName)) throw new MalformedDataError(key, `field "spec.interfaceName" ${JSON.stringify(interfaceName.slice(0, 40))} is not an interface name`);
  const ipv4: string[] = [];
  const ipv6: string[] = [];
  for (const network of field(key, spec, 'ipNetworks', isStringList, 'a list of strings')) {
    const cidr = (() => {
      try {
        return parseCidr(network, 'spec.ipNetworks');
      } catch (err) {
        throw new MalformedDataError(key, (err as Error).message);
      }
    })();
    if (cidr.prefix !== (cidr.version === 4 ? 32 : 128)) throw new MalformedDataError(key, `field "spec.ipNetworks" holds ${network}: only /32 and /128 are endpoint addresses`);
    (cidr.version === 4 ? ipv4 : ipv6).push(formatAddress({ version: cidr.version, value: cidr.network }));
  }
  const labels = metadata.labels === undefined ? {} : field(key, metadata, 'labels', isStringMap, 'a map of strings');
  return {
    node: field(key, spec, 'node', isString, 'a string'),
    namespace,
    interfaceName,
    ipv4,
    ipv6,
    labels,
    profiles: spec.profiles === undefined ? [] : field(key, spec, 'profiles', isStringList, 'a list of strings'),
  };
}

/**
 * Applies one record (or its deletion, when `value` is undefined) to the calculator. A record that
 * does not check out is applied as a deletion and its error thrown, for the caller to log.
 */
export function applyRecord(calculator: PolicyCalculator, keys: KeyLayout, key: string, value: string | undefined): void {
  const ref = keys.resourceOf(key);
  if (!ref || !POLICY_KINDS.includes(ref.kind)) return;
  const remove = () => {
    switch (ref.kind) {
      case 'WorkloadEndpoint':
        return calculator.setEndpoint(key, undefined);
      case 'Profile':
        return calculator.setProfile(ref.name, undefined);
      case 'GlobalNetworkPolicy':
      case 'NetworkPolicy':
        return calculator.setPolicy(key, undefined);
      case 'FelixConfiguration':
        if (ref.name === 'default') calculator.setFelixSettings(DEFAULT_FELIX_SETTINGS);
        return;
    }
  };
  if (value === undefined) return remove();
  try {
    const document = JSON.parse(value) as unknown;
    if (!isObject(document)) throw new MalformedDataError(key, 'expected a JSON object');
    switch (ref.kind) {
      case 'WorkloadEndpoint':
        return calculator.setEndpoint(key, endpointRecord(key, ref.namespace!, document));
      case 'Profile':
        return calculator.setProfile(ref.name, validateProfile(document));
      case 'GlobalNetworkPolicy':
      case 'NetworkPolicy':
        return calculator.setPolicy(key, validatePolicy({ ...document, kind: ref.kind, metadata: { ...(isObject(document.metadata) ? document.metadata : {}), namespace: ref.namespace } }));
      case 'FelixConfiguration':
        if (ref.name === 'default') calculator.setFelixSettings(validateFelixConfiguration(document));
        return;
    }
  } catch (err) {
    remove();
    if (err instanceof PolicyValidationError) throw new MalformedDataError(key, err.message);
    if (err instanceof CalicoError) throw err;
    throw new MalformedDataError(key, (err as Error).message);
  }
}
