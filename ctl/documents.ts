/**
 * Resource documents as operators write them: YAML or JSON, one or several (YAML `---`, a JSON
 * array, or a `...List` with `items`), each `apiVersion: projectcalico.org/v3` with kind, metadata
 * and spec. Errors name the document and the field.
 */
import { parseAllDocuments } from 'yaml';
import { API_VERSION } from '../shared/datastore/resources';
import { messageOf } from '../shared/errors';
import { parseBoundedJson } from '../shared/json';
import { CtlError } from './errors';

export const KINDS = ['IPPool', 'Profile', 'WorkloadEndpoint', 'Node', 'ClusterInformation', 'IPAMConfiguration', 'GlobalNetworkPolicy', 'NetworkPolicy', 'FelixConfiguration', 'BGPConfiguration', 'BGPPeer'] as const;
export type CtlKind = (typeof KINDS)[number];

const ALIASES: Record<string, CtlKind> = {
  ippool: 'IPPool', ippools: 'IPPool', pool: 'IPPool', pools: 'IPPool',
  profile: 'Profile', profiles: 'Profile', pro: 'Profile',
  workloadendpoint: 'WorkloadEndpoint', workloadendpoints: 'WorkloadEndpoint', wep: 'WorkloadEndpoint', weps: 'WorkloadEndpoint',
  node: 'Node', nodes: 'Node', no: 'Node',
  clusterinformation: 'ClusterInformation', clusterinformations: 'ClusterInformation',
  ipamconfiguration: 'IPAMConfiguration', ipamconfig: 'IPAMConfiguration', ipamconfigs: 'IPAMConfiguration',
  globalnetworkpolicy: 'GlobalNetworkPolicy', globalnetworkpolicies: 'GlobalNetworkPolicy', gnp: 'GlobalNetworkPolicy', gnps: 'GlobalNetworkPolicy',
  networkpolicy: 'NetworkPolicy', networkpolicies: 'NetworkPolicy', policy: 'NetworkPolicy', policies: 'NetworkPolicy', pol: 'NetworkPolicy', np: 'NetworkPolicy', netpol: 'NetworkPolicy',
  felixconfiguration: 'FelixConfiguration', felixconfigurations: 'FelixConfiguration', felixconfig: 'FelixConfiguration', felixconfigs: 'FelixConfiguration',
  bgpconfiguration: 'BGPConfiguration', bgpconfigurations: 'BGPConfiguration', bgpconfig: 'BGPConfiguration', bgpconfigs: 'BGPConfiguration',
  bgppeer: 'BGPPeer', bgppeers: 'BGPPeer', bgpp: 'BGPPeer', bgpps: 'BGPPeer', bp: 'BGPPeer', bps: 'BGPPeer',
};

export function kindOf(text: string): CtlKind {
  const kind = ALIASES[text.toLowerCase()];
  if (!kind) throw new CtlError(`unknown resource kind "${text}" (one of ${KINDS.join(', ')})`);
  return kind;
}

export interface Document {
  readonly kind: CtlKind;
  readonly metadata: { name: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  readonly spec: Record<string, unknown>;
  /** "document 2 of FILE", for error messages. */
  readonly where: string;
}

export function parseDocuments(text: string, source: string): Document[] {
  const raw: unknown[] = [];
  const trimmed = text.trim();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    let value: unknown;
    try {
      value = parseBoundedJson(trimmed, source);
    } catch (err) {
      throw new CtlError(`${source} is not valid JSON: ${messageOf(err)}`);
    }
    raw.push(...(Array.isArray(value) ? value : [value]));
  } else {
    for (const doc of parseAllDocuments(text)) {
      if (doc.errors.length > 0) throw new CtlError(`${source} is not valid YAML: ${doc.errors[0]!.message}`);
      const value = doc.toJS();
      if (value !== null && value !== undefined) raw.push(value);
    }
  }
  const documents: Document[] = [];
  raw.forEach((value, i) => {
    const where = raw.length > 1 ? `document ${i + 1} of ${source}` : source;
    const object = value as Record<string, unknown>;
    if (typeof object?.kind === 'string' && object.kind.endsWith('List') && Array.isArray(object.items)) {
      object.items.forEach((item, j) => documents.push(documentOf(item, `${where}, item ${j + 1}`)));
    } else documents.push(documentOf(value, where));
  });
  if (documents.length === 0) throw new CtlError(`${source} holds no resource`);
  return documents;
}

function documentOf(value: unknown, where: string): Document {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new CtlError(`${where}: expected a resource object`);
  const object = value as Record<string, unknown>;
  if (object.apiVersion !== API_VERSION) throw new CtlError(`${where}: apiVersion must be ${API_VERSION}, got ${JSON.stringify(object.apiVersion)}`);
  if (typeof object.kind !== 'string' || !(KINDS as readonly string[]).includes(object.kind)) {
    throw new CtlError(`${where}: kind ${JSON.stringify(object.kind)} is not one of ${KINDS.join(', ')}`);
  }
  const metadata = object.metadata as Document['metadata'] | undefined;
  if (typeof metadata !== 'object' || metadata === null || typeof metadata.name !== 'string' || metadata.name === '') {
    throw new CtlError(`${where}: metadata.name is required`);
  }
  const spec = object.spec ?? {};
  if (typeof spec !== 'object' || Array.isArray(spec)) throw new CtlError(`${where}: spec must be an object`);
  return { kind: object.kind as CtlKind, metadata, spec: spec as Record<string, unknown>, where };
}
