/**
 * Policy as the compiler sees it: Calico v3 rules, policies and profiles after validation, with
 * selectors parsed, protocols as numbers, ports as ranges and nets as CIDRs. Built only by
 * validate.ts, so everything downstream may trust it.
 */
import type { Cidr, IpVersion } from '../net';
import type { Labels, Selector } from './selector';

export type RuleAction = 'Allow' | 'Deny' | 'Log' | 'Pass';
export type Direction = 'ingress' | 'egress';

export interface PortRange {
  readonly from: number;
  readonly to: number;
}

/** An IP protocol by number, with the name Calico gives it where it has one. */
export interface Protocol {
  readonly number: number;
  readonly name?: 'TCP' | 'UDP' | 'ICMP' | 'ICMPv6' | 'SCTP' | 'UDPLite';
}

export interface IcmpMatch {
  readonly type: number;
  readonly code?: number;
}

/** One end of a rule (source or destination). Selectors are already scoped (see validate.ts). */
export interface RuleEnd {
  readonly nets: readonly Cidr[];
  readonly notNets: readonly Cidr[];
  readonly selector?: Selector;
  readonly notSelector?: Selector;
  readonly ports: readonly PortRange[];
  readonly notPorts: readonly PortRange[];
}

export interface PolicyRule {
  readonly action: RuleAction;
  readonly ipVersion?: IpVersion;
  readonly protocol?: Protocol;
  readonly notProtocol?: Protocol;
  readonly icmp?: IcmpMatch;
  readonly notICMP?: IcmpMatch;
  readonly source: RuleEnd;
  readonly destination: RuleEnd;
}

/** A GlobalNetworkPolicy, or a NetworkPolicy (then `namespace` is set and scopes its selectors). */
export interface Policy {
  readonly kind: 'GlobalNetworkPolicy' | 'NetworkPolicy';
  readonly name: string;
  readonly namespace?: string;
  /** Lower first; undefined after every number, as Calico orders them. */
  readonly order?: number;
  /** Which endpoints it applies to (namespace scope included). */
  readonly selector: Selector;
  readonly types: readonly Direction[];
  readonly ingress: readonly PolicyRule[];
  readonly egress: readonly PolicyRule[];
  /** Its record never checked out: it stands in, denying (validate.ts, quarantinedPolicy). */
  readonly quarantined?: boolean;
}

export interface Profile {
  readonly name: string;
  readonly ingress: readonly PolicyRule[];
  readonly egress: readonly PolicyRule[];
  readonly labelsToApply: Labels;
  /** Its record never checked out: it stands in, denying its members (validate.ts, quarantinedProfile). */
  readonly quarantined?: boolean;
}

export type EndpointToHostAction = 'Drop' | 'Accept' | 'Return';

/** FelixConfiguration `default`, the fields we act on (Calico's names and defaults, and one of ours). */
export interface FelixSettings {
  readonly defaultEndpointToHostAction: EndpointToHostAction;
  /** Workloads may send VXLAN (UDP to the VXLAN port) and IPIP packets themselves. */
  readonly allowVXLANPacketsFromWorkloads: boolean;
  readonly allowIPIPPacketsFromWorkloads: boolean;
  /** "Any" honours endpoints' allowSpoofedSourcePrefixes; "Disabled" ignores them. */
  readonly workloadSourceSpoofing: 'Disabled' | 'Any';
  /** Ours: workloads may reach the datastore the daemons use and the daemon's metrics. */
  readonly allowDatastoreAccessFromWorkloads: boolean;
}

export const DEFAULT_FELIX_SETTINGS: FelixSettings = {
  defaultEndpointToHostAction: 'Drop',
  allowVXLANPacketsFromWorkloads: false,
  allowIPIPPacketsFromWorkloads: false,
  workloadSourceSpoofing: 'Disabled',
  allowDatastoreAccessFromWorkloads: false,
};

/** The label every endpoint carries with its namespace (Calico's); namespace selectors match on it. */
export const NAMESPACE_LABEL = 'projectcalico.org/namespace';
/** The labels a namespace has for `namespaceSelector` (we keep no Namespace objects: its name only). */
export const NAMESPACE_NAME_LABEL = 'projectcalico.org/name';

/** Policies apply in order, then by name (Calico's). */
export function comparePolicies(a: Policy, b: Policy): number {
  const orderA = a.order ?? Infinity;
  const orderB = b.order ?? Infinity;
  if (orderA !== orderB) return orderA < orderB ? -1 : 1;
  const nameA = `${a.namespace ?? ''}/${a.name}`;
  const nameB = `${b.namespace ?? ''}/${b.name}`;
  return nameA < nameB ? -1 : nameA > nameB ? 1 : 0;
}
