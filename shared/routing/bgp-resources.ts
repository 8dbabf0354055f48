/**
 * BGPConfiguration and BGPPeer, from their Calico v3 JSON to checked values, as Calico checks
 * them. Every refusal names the field; calicoctl refuses such a resource, the daemon logs and skips
 * it (and a BGPConfiguration it cannot read counts as absent: Calico's defaults).
 */
import { CalicoError } from '../errors';
import { parseAddress, type IpAddress } from '../net';
import { parseSelector, SelectorSyntaxError, type Selector } from '../policy/selector';

export class BgpValidationError extends CalicoError {
  readonly code = 'BGP_INVALID';

  constructor(
    readonly field: string,
    reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

export const LOG_SEVERITIES = ['Debug', 'Info', 'Warning', 'Error', 'Fatal'] as const;
export type LogSeverity = (typeof LOG_SEVERITIES)[number];

export interface BgpSettings {
  readonly asNumber: number;
  readonly nodeToNodeMeshEnabled: boolean;
  readonly logSeverityScreen: LogSeverity;
}

/** Calico's defaults, when there is no BGPConfiguration `default`. */
export const DEFAULT_BGP_SETTINGS: BgpSettings = { asNumber: 64512, nodeToNodeMeshEnabled: true, logSeverityScreen: 'Info' };

export interface BgpPeerRule {
  readonly name: string;
  /** Which nodes peer: one by name, those a selector picks, or (neither) every node. */
  readonly node?: string;
  readonly nodeSelector?: Selector;
  /** With whom: one address and AS, or the nodes a selector picks (each with its address and AS). */
  readonly peer: { readonly address: IpAddress; readonly asNumber: number } | { readonly selector: Selector };
}

type Json = Record<string, unknown>;

function specOf(resource: unknown, kind: string): { name: string; spec: Json } {
  const r = resource as { kind?: unknown; metadata?: { name?: unknown }; spec?: unknown };
  if (r?.kind !== kind) throw new BgpValidationError('kind', `must be ${kind}`);
  if (typeof r.metadata?.name !== 'string' || r.metadata.name === '') throw new BgpValidationError('metadata.name', 'is required');
  const spec = r.spec ?? {};
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) throw new BgpValidationError('spec', 'must be an object');
  return { name: r.metadata.name, spec: spec as Json };
}

function known(spec: Json, fields: readonly string[]): void {
  for (const [key, value] of Object.entries(spec)) {
    if (value !== undefined && value !== null && !fields.includes(key)) throw new BgpValidationError(`spec.${key}`, `unknown field (known: ${fields.join(', ')})`);
  }
}

/** An AS number: a whole number from 1 to 4294967295 (or its text), or asdot "X.Y". */
export function parseAsNumber(value: unknown, field: string): number {
  const text = typeof value === 'number' ? String(value) : typeof value === 'string' ? value.trim() : '';
  const dot = /^(\d{1,5})\.(\d{1,5})$/.exec(text);
  const n = dot ? Number(dot[1]) * 65536 + Number(dot[2]) : /^\d{1,10}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 4294967295) || (dot && (Number(dot[1]) > 65535 || Number(dot[2]) > 65535))) {
    throw new BgpValidationError(field, `${JSON.stringify(value)} is not an AS number (1 to 4294967295, or X.Y)`);
  }
  return n;
}

function selector(value: unknown, field: string): Selector {
  if (typeof value !== 'string') throw new BgpValidationError(field, 'must be a selector string');
  try {
    return parseSelector(value);
  } catch (err) {
    if (err instanceof SelectorSyntaxError) throw new BgpValidationError(field, err.message);
    throw err;
  }
}

export function validateBgpConfiguration(resource: unknown): BgpSettings {
  const { name, spec } = specOf(resource, 'BGPConfiguration');
  known(spec, ['asNumber', 'nodeToNodeMeshEnabled', 'logSeverityScreen']);
  if (name !== 'default' && (spec.asNumber !== undefined || spec.nodeToNodeMeshEnabled !== undefined)) {
    // As in Calico: only the cluster-wide `default` may set these.
    throw new BgpValidationError('metadata.name', 'asNumber and nodeToNodeMeshEnabled may be set only in BGPConfiguration "default"');
  }
  const severity = spec.logSeverityScreen ?? DEFAULT_BGP_SETTINGS.logSeverityScreen;
  if (!(LOG_SEVERITIES as readonly unknown[]).includes(severity)) throw new BgpValidationError('spec.logSeverityScreen', `${JSON.stringify(severity)} is not one of ${LOG_SEVERITIES.join(', ')}`);
  const mesh = spec.nodeToNodeMeshEnabled ?? true;
  if (typeof mesh !== 'boolean') throw new BgpValidationError('spec.nodeToNodeMeshEnabled', 'must be true or false');
  return {
    asNumber: spec.asNumber === undefined ? DEFAULT_BGP_SETTINGS.asNumber : parseAsNumber(spec.asNumber, 'spec.asNumber'),
    nodeToNodeMeshEnabled: mesh,
    logSeverityScreen: severity as LogSeverity,
  };
}

export function validateBgpPeer(resource: unknown): BgpPeerRule {
  const { name, spec } = specOf(resource, 'BGPPeer');
  known(spec, ['node', 'nodeSelector', 'peerIP', 'asNumber', 'peerSelector']);
  if (spec.node !== undefined && spec.nodeSelector !== undefined) throw new BgpValidationError('spec.node', 'node and nodeSelector cannot both be set');
  if (spec.node !== undefined && (typeof spec.node !== 'string' || spec.node === '')) throw new BgpValidationError('spec.node', 'must be a node name');
  const which = {
    ...(spec.node !== undefined ? { node: spec.node as string } : {}),
    ...(spec.nodeSelector !== undefined ? { nodeSelector: selector(spec.nodeSelector, 'spec.nodeSelector') } : {}),
  };
  if (spec.peerSelector !== undefined) {
    if (spec.peerIP !== undefined || spec.asNumber !== undefined) throw new BgpValidationError('spec.peerSelector', 'peerSelector cannot be set with peerIP or asNumber (the selected nodes have their own)');
    return { name, ...which, peer: { selector: selector(spec.peerSelector, 'spec.peerSelector') } };
  }
  if (spec.peerIP === undefined) throw new BgpValidationError('spec.peerIP', 'is required (or peerSelector)');
  let address: IpAddress;
  try {
    // Calico allows "address:port"; we peer on BGP's own port only.
    address = parseAddress(String(spec.peerIP));
  } catch {
    throw new BgpValidationError('spec.peerIP', `${JSON.stringify(spec.peerIP)} is not an IP address`);
  }
  if (spec.asNumber === undefined) throw new BgpValidationError('spec.asNumber', 'is required with peerIP');
  return { name, ...which, peer: { address, asNumber: parseAsNumber(spec.asNumber, 'spec.asNumber') } };
}
