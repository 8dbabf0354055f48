/** Printing: aligned tables, and YAML/JSON that `apply` reads back. */
import { stringify } from 'yaml';
import type { CtlResource } from './resource-client';
import { policyTypes } from '../shared/policy/validate';
import { CtlError } from './errors';

export type Format = 'table' | 'wide' | 'yaml' | 'json';

export function formatOf(text: string | undefined): Format {
  const format = text ?? 'table';
  if (format !== 'table' && format !== 'wide' && format !== 'yaml' && format !== 'json') throw new CtlError(`-o must be table, wide, yaml or json, not "${format}"`);
  return format;
}

export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('   ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

type Columns = { header: string[]; row: (r: CtlResource) => string[] };

const sameWide = (columns: Columns) => ({ table: columns, wide: columns });

const s = (v: unknown) => (v === undefined || v === null ? '' : Array.isArray(v) ? v.join(',') : String(v));

const COLUMNS: Record<string, { table: Columns; wide: Columns }> = {
  IPPool: {
    table: { header: ['NAME', 'CIDR', 'SELECTOR'], row: (r) => [r.metadata.name, s(r.spec.cidr), s(r.spec.nodeSelector ?? 'all()')] },
    wide: { header: ['NAME', 'CIDR', 'NAT', 'IPIPMODE', 'VXLANMODE', 'DISABLED', 'BLOCKSIZE', 'SELECTOR'], row: (r) => [r.metadata.name, s(r.spec.cidr), s(r.spec.natOutgoing ?? false), s(r.spec.ipipMode ?? 'Never'), s(r.spec.vxlanMode ?? 'Never'), s(r.spec.disabled ?? false), s(r.spec.blockSize), s(r.spec.nodeSelector ?? 'all()')] },
  },
  Profile: {
    table: { header: ['NAME'], row: (r) => [r.metadata.name] },
    wide: { header: ['NAME', 'LABELS'], row: (r) => [r.metadata.name, Object.keys((r.spec.labelsToApply as object) ?? {}).join(',')] },
  },
  WorkloadEndpoint: {
    table: { header: ['WORKLOAD', 'NODE', 'NETWORKS', 'INTERFACE'], row: (r) => [s(r.spec.workload === 'libnetwork' ? r.spec.endpoint : r.spec.workload), s(r.spec.node), s(r.spec.ipNetworks), s(r.spec.interfaceName)] },
    wide: { header: ['NAMESPACE', 'NAME', 'WORKLOAD', 'NODE', 'NETWORKS', 'INTERFACE', 'PROFILES', 'ORCHESTRATOR'], row: (r) => [s(r.metadata.namespace), r.metadata.name, s(r.spec.workload), s(r.spec.node), s(r.spec.ipNetworks), s(r.spec.interfaceName), s(r.spec.profiles), s(r.spec.orchestrator)] },
  },
  Node: {
    table: { header: ['NAME'], row: (r) => [r.metadata.name] },
    wide: { header: ['NAME', 'IPV4', 'IPV6'], row: (r) => [r.metadata.name, s((r.spec.bgp as { ipv4Address?: string })?.ipv4Address), s((r.spec.bgp as { ipv6Address?: string })?.ipv6Address)] },
  },
  ClusterInformation: {
    table: { header: ['NAME', 'DATASTOREREADY'], row: (r) => [r.metadata.name, s(r.spec.datastoreReady)] },
    wide: { header: ['NAME', 'CLUSTERGUID', 'CLUSTERTYPE', 'CALICOVERSION', 'DATASTOREREADY'], row: (r) => [r.metadata.name, s(r.spec.clusterGUID), s(r.spec.clusterType), s(r.spec.calicoVersion), s(r.spec.datastoreReady)] },
  },
  GlobalNetworkPolicy: {
    table: { header: ['NAME'], row: (r) => [r.metadata.name] },
    wide: { header: ['NAME', 'ORDER', 'SELECTOR', 'TYPES'], row: (r) => [r.metadata.name, s(r.spec.order), s(r.spec.selector ?? 'all()'), s(policyTypes(r.spec))] },
  },
  NetworkPolicy: {
    table: { header: ['NAMESPACE', 'NAME'], row: (r) => [s(r.metadata.namespace), r.metadata.name] },
    wide: { header: ['NAMESPACE', 'NAME', 'ORDER', 'SELECTOR', 'TYPES'], row: (r) => [s(r.metadata.namespace), r.metadata.name, s(r.spec.order), s(r.spec.selector ?? 'all()'), s(policyTypes(r.spec))] },
  },
  FelixConfiguration: {
    table: { header: ['NAME'], row: (r) => [r.metadata.name] },
    wide: { header: ['NAME', 'DEFAULTENDPOINTTOHOSTACTION'], row: (r) => [r.metadata.name, s(r.spec.defaultEndpointToHostAction ?? 'Drop')] },
  },
  // Calico's calicoctl prints the same columns for these in both forms.
  BGPConfiguration: sameWide({ header: ['NAME', 'LOGSEVERITY', 'MESHENABLED', 'ASNUMBER'], row: (r) => [r.metadata.name, s(r.spec.logSeverityScreen ?? 'Info'), s(r.spec.nodeToNodeMeshEnabled ?? true), s(r.spec.asNumber ?? (r.metadata.name === 'default' ? 64512 : ''))] }),
  BGPPeer: sameWide({ header: ['NAME', 'PEERIP', 'NODE', 'ASN'], row: (r) => [r.metadata.name, s(r.spec.peerIP ?? r.spec.peerSelector), s(r.spec.node ?? r.spec.nodeSelector ?? '(global)'), s(r.spec.asNumber)] }),
  IPAMConfiguration: {
    table: { header: ['NAME', 'STRICTAFFINITY', 'MAXBLOCKSPERHOST'], row: (r) => [r.metadata.name, s(r.spec.strictAffinity), s(r.spec.maxBlocksPerHost)] },
    wide: { header: ['NAME', 'STRICTAFFINITY', 'MAXBLOCKSPERHOST', 'AUTOALLOCATEBLOCKS'], row: (r) => [r.metadata.name, s(r.spec.strictAffinity), s(r.spec.maxBlocksPerHost), s(r.spec.autoAllocateBlocks)] },
  },
};

/** One resource asked for by name prints alone; otherwise a `<Kind>List`, which apply reads back too. */
export function printResources(kind: string, resources: CtlResource[], format: Format, single: boolean): string {
  if (format === 'table' || format === 'wide') {
    const columns = COLUMNS[kind]![format];
    return table(columns.header, resources.map(columns.row));
  }
  const value = single ? resources[0] : { apiVersion: 'projectcalico.org/v3', kind: `${kind}List`, metadata: {}, items: resources };
  return format === 'json' ? JSON.stringify(value, null, 2) : stringify(value).trimEnd();
}
