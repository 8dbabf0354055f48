/**
 * Calico v3 resources (`apiVersion: projectcalico.org/v3`): typed records with create, update and
 * delete guarded by the key's revision, which is the resource's `metadata.resourceVersion`.
 */
import { randomUUID } from 'node:crypto';
import { FieldReader, parseJsonObject, type JsonObject } from './codec';
import { AlreadyExistsError, ConflictError, MalformedDataError, NotFoundError } from './errors';
import { isNamespaced, type KeyLayout, type ResourceKind } from './keys';
import type { EtcdKv, Entry, GuardedPut } from './kv';
import { malformedRecords } from '../diagnostics';

export const API_VERSION = 'projectcalico.org/v3';

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Not stored: the key's etcd ModRevision, filled in on read. */
  resourceVersion?: string;
}

export interface IPPoolSpec {
  cidr: string;
  blockSize?: number;
  disabled?: boolean;
  natOutgoing?: boolean;
  ipipMode?: 'Never' | 'Always' | 'CrossSubnet';
  vxlanMode?: 'Never' | 'Always' | 'CrossSubnet';
  nodeSelector?: string;
}

export interface WorkloadEndpointSpec {
  orchestrator: string;
  workload?: string;
  node: string;
  containerID?: string;
  pod?: string;
  endpoint: string;
  ipNetworks: string[];
  ipNATs?: { internalIP: string; externalIP: string }[];
  ipv4Gateway?: string;
  ipv6Gateway?: string;
  profiles: string[];
  interfaceName: string;
  mac?: string;
  ports?: { name?: string; protocol: string; port: number; hostPort?: number; hostIP?: string }[];
}

export interface RuleEnd {
  nets?: string[];
  notNets?: string[];
  selector?: string;
  notSelector?: string;
  ports?: (number | string)[];
  notPorts?: (number | string)[];
}

export interface Rule {
  action: 'Allow' | 'Deny' | 'Log' | 'Pass';
  ipVersion?: 4 | 6;
  protocol?: string | number;
  source?: RuleEnd;
  destination?: RuleEnd;
}

export interface ProfileSpec {
  ingress?: Rule[];
  egress?: Rule[];
  labelsToApply?: Record<string, string>;
}

export interface NodeSpec {
  bgp?: {
    ipv4Address?: string;
    ipv6Address?: string;
    /** This host's AS, else BGPConfiguration's. */
    asNumber?: number;
    /** Set on a host that is a route reflector: its cluster ID. */
    routeReflectorClusterID?: string;
    ipv4IPIPTunnelAddr?: string;
  };
  ipv4VXLANTunnelAddr?: string;
  vxlanTunnelMACAddr?: string;
}

export interface ClusterInformationSpec {
  clusterGUID?: string;
  calicoVersion?: string;
  clusterType?: string;
  datastoreReady?: boolean;
}

/** Policy kinds are checked by shared/policy/validate.ts, which reads them as plain JSON. */
export type PolicySpec = JsonObject;

export interface SpecOf {
  GlobalNetworkPolicy: PolicySpec;
  NetworkPolicy: PolicySpec;
  FelixConfiguration: PolicySpec;
  /** BGP kinds are checked by shared/routing/bgp-resources.ts, which reads them as plain JSON. */
  BGPConfiguration: JsonObject;
  BGPPeer: JsonObject;
  CalicoNodeStatus: JsonObject;
  IPPool: IPPoolSpec;
  WorkloadEndpoint: WorkloadEndpointSpec;
  Profile: ProfileSpec;
  Node: NodeSpec;
  ClusterInformation: ClusterInformationSpec;
}

export interface Resource<K extends ResourceKind = ResourceKind> {
  kind: K;
  apiVersion: typeof API_VERSION;
  metadata: ObjectMeta;
  spec: SpecOf[K];
  status?: JsonObject;
}


export class ResourceStore {
  constructor(
    private readonly kv: EtcdKv,
    private readonly keys: KeyLayout,
  ) {}

  keyOf(kind: ResourceKind, name: string, namespace?: string): string {
    return this.keys.resource(kind, name, isNamespaced(kind) ? (namespace ?? 'default') : undefined);
  }

  async get<K extends ResourceKind>(kind: K, name: string, namespace?: string): Promise<Resource<K> | undefined> {
    const entry = await this.kv.get(this.keyOf(kind, name, namespace));
    return entry ? decodeResource(kind, entry) : undefined;
  }

  /**
   * Several resources in one round trip, each undefined when absent; `serializable` for lookups
   * that may be a moment stale because a guarded write follows (see EtcdKv.readMany).
   */
  async getMany(refs: readonly { kind: ResourceKind; name: string; namespace?: string }[], options: { serializable?: boolean } = {}): Promise<(Resource | undefined)[]> {
    const entries = await this.kv.readMany(refs.map((r) => ({ key: this.keyOf(r.kind, r.name, r.namespace) })), options);
    return refs.map((r, i) => (entries[i]![0] ? decodeResource(r.kind, entries[i]![0]) : undefined));
  }

  /**
   * Every resource of a kind (in one namespace, if given): for kinds an operator keeps few of.
   * `skipMalformed`: a malformed one is skipped alone (see decodeEach), else it is an error.
   */
  async list<K extends ResourceKind>(kind: K, namespace?: string, options: SkipOptions = {}): Promise<Resource<K>[]> {
    const all: Resource<K>[] = [];
    for await (const page of this.pages(kind, { namespace, ...options })) all.push(...page);
    return all;
  }

  /**
   * Resources of a kind a page at a time, at one revision: for kinds that grow with the cluster.
   * `namePrefix` narrows the read to names that start with it (one host's endpoints).
   */
  async *pages<K extends ResourceKind>(kind: K, options: { namespace?: string; namePrefix?: string; pageSize?: number } & SkipOptions = {}): AsyncGenerator<Resource<K>[]> {
    const base = this.keys.resourcePrefix(kind, isNamespaced(kind) ? options.namespace : undefined);
    const skip = options.skipMalformed || options.onMalformed !== undefined;
    for await (const page of this.kv.pages(`${base}${options.namePrefix ?? ''}`, { pageSize: options.pageSize ?? 200 })) {
      yield skip ? decodeEach(page, (e) => decodeResource(kind, e), options.onMalformed) : page.map((e) => decodeResource(kind, e));
    }
  }

  /** The write that creates `resource` (uid and timestamp filled in), for use in a larger transaction. */
  createOp<K extends ResourceKind>(resource: Resource<K>): { op: GuardedPut; resource: Resource<K> } {
    const stored = withCreationMetadata(resource);
    const key = this.keyOf(resource.kind, resource.metadata.name, resource.metadata.namespace);
    return { op: { key, put: encodeResource(stored), expect: { absent: true } }, resource: stored };
  }

  /** The write that replaces `resource` as read (at its resourceVersion), for use in a larger transaction. */
  updateOp<K extends ResourceKind>(resource: Resource<K>): GuardedPut {
    const { resourceVersion, ...metadata } = resource.metadata;
    const key = this.keyOf(resource.kind, metadata.name, metadata.namespace);
    if (!resourceVersion) throw new ConflictError(key);
    return { key, put: encodeResource({ ...resource, metadata }), expect: { modRevision: resourceVersion } };
  }

  async create<K extends ResourceKind>(resource: Resource<K>): Promise<Resource<K>> {
    const { op, resource: stored } = this.createOp(resource);
    const outcome = await this.kv.txn([op]);
    if (!outcome.ok) throw new AlreadyExistsError(op.key);
    return { ...stored, metadata: { ...stored.metadata, resourceVersion: outcome.revision } };
  }

  /** Replaces a resource read earlier; fails with ConflictError if it changed since. */
  async update<K extends ResourceKind>(resource: Resource<K>): Promise<Resource<K>> {
    const op = this.updateOp(resource);
    const outcome = await this.kv.txn([op]);
    if (!outcome.ok) {
      if (!outcome.current.get(op.key)) throw new NotFoundError(op.key);
      throw new ConflictError(op.key);
    }
    const { resourceVersion: _read, ...metadata } = resource.metadata;
    return { ...resource, metadata: { ...metadata, resourceVersion: outcome.revision } };
  }

  /** Deletes, guarded by `resourceVersion` when given; returns false when there was nothing. */
  async delete(kind: ResourceKind, name: string, namespace?: string, resourceVersion?: string): Promise<boolean> {
    const key = this.keyOf(kind, name, namespace);
    const revision = resourceVersion ?? (await this.kv.get(key))?.modRevision;
    if (revision === undefined) return false;
    const outcome = await this.kv.txn([{ key, delete: true, expect: { modRevision: revision } }]);
    if (outcome.ok) return true;
    if (!outcome.current.get(key)) return false;
    throw new ConflictError(key);
  }
}

function withCreationMetadata<K extends ResourceKind>(resource: Resource<K>): Resource<K> {
  const { resourceVersion: _ignored, ...metadata } = resource.metadata;
  return {
    ...resource,
    apiVersion: API_VERSION,
    metadata: {
      ...metadata,
      uid: metadata.uid ?? randomUUID(),
      creationTimestamp: metadata.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    },
  };
}

export function encodeResource(resource: Resource): string {
  const { resourceVersion: _ignored, ...metadata } = resource.metadata;
  return JSON.stringify({ kind: resource.kind, apiVersion: API_VERSION, metadata, spec: resource.spec, ...(resource.status ? { status: resource.status } : {}) });
}

export function decodeResource<K extends ResourceKind>(kind: K, entry: Entry): Resource<K> {
  const r = new FieldReader(entry.key, parseJsonObject(entry.key, entry.value));
  const storedKind = r.string('kind');
  if (storedKind !== kind) throw new MalformedDataError(entry.key, `field "kind" is "${storedKind}", expected "${kind}"`);
  const m = r.child('metadata');
  const metadata: ObjectMeta = { ...(m.raw() as unknown as ObjectMeta), name: m.string('name'), resourceVersion: entry.modRevision };
  const labels = m.stringMap('labels');
  const annotations = m.stringMap('annotations');
  if (labels) metadata.labels = labels;
  if (annotations) metadata.annotations = annotations;
  const spec = r.child('spec').raw() as unknown as SpecOf[K];
  checkSpec(kind, r.child('spec'));
  const status = r.optionalObject('status');
  return { kind, apiVersion: API_VERSION, metadata, spec, ...(status ? { status } : {}) };
}

/**
 * How a reader takes malformed records: an error (the default), or skipped alone (`skipMalformed`,
 * or `onMalformed`, which is also told of each).
 */
export interface SkipOptions {
  readonly skipMalformed?: boolean;
  readonly onMalformed?: (err: MalformedDataError) => void;
}

/**
 * The fields readers use without checking them again, checked here: a record typed wrongly is an
 * error naming its key and field, not a TypeError somewhere in a reader.
 */
function checkSpec(kind: ResourceKind, spec: FieldReader): void {
  const strings = (field: string, required: boolean) => {
    const value = spec.raw()[field];
    if ((value === undefined || value === null) && !required) return;
    if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) throw new MalformedDataError(spec.key, `field "spec.${field}" must be a list of strings`);
  };
  switch (kind) {
    case 'IPPool':
      spec.string('cidr');
      spec.integer('blockSize', 0);
      spec.boolean('disabled', false);
      for (const field of ['ipipMode', 'vxlanMode', 'nodeSelector']) spec.optionalString(field);
      return;
    case 'WorkloadEndpoint':
      spec.string('node');
      strings('ipNetworks', true);
      strings('profiles', false);
      for (const field of ['orchestrator', 'workload', 'containerID', 'endpoint', 'interfaceName', 'mac']) spec.optionalString(field);
      return;
    case 'Node': {
      if (spec.optionalObject('bgp') !== undefined) {
        const bgp = spec.child('bgp');
        for (const field of ['ipv4Address', 'ipv6Address', 'routeReflectorClusterID', 'ipv4IPIPTunnelAddr']) bgp.optionalString(field);
        bgp.integer('asNumber', 0);
      }
      for (const field of ['ipv4VXLANTunnelAddr', 'vxlanTunnelMACAddr']) spec.optionalString(field);
      return;
    }
    default:
      return;
  }
}

/**
 * Decodes each item (an entry, or one with what its decoding needs); one that is malformed is skipped alone (told on the malformed-records
 * channel, for the daemon's log) and the rest are decoded: one bad record stops nothing else.
 */
export function decodeEach<I, T>(items: readonly I[], decode: (item: I) => T, onMalformed?: (err: MalformedDataError) => void): T[] {
  const out: T[] = [];
  for (const item of items) {
    try {
      out.push(decode(item));
    } catch (err) {
      if (!(err instanceof MalformedDataError)) throw err;
      reportMalformed(err);
      onMalformed?.(err);
    }
  }
  return out;
}

/** Tells whoever listens (the daemon logs it once) that a record was skipped, and why. */
export function reportMalformed(err: MalformedDataError): void {
  if (malformedRecords.hasSubscribers) malformedRecords.publish({ key: err.key, error: err.message });
}

/**
 * The few fields of a WorkloadEndpoint a cluster-wide check needs, without building the whole
 * resource (a check reads every endpoint of the cluster); the same errors for a malformed one.
 */
export function decodeEndpointAddresses(entry: Entry): { name: string; namespace: string; node: string; ipNetworks: string[] } {
  const r = new FieldReader(entry.key, parseJsonObject(entry.key, entry.value));
  if (r.string('kind') !== 'WorkloadEndpoint') throw new MalformedDataError(entry.key, 'field "kind" is not "WorkloadEndpoint"');
  const metadata = r.child('metadata');
  const spec = r.child('spec');
  const ipNetworks = spec.array('ipNetworks');
  if (ipNetworks.some((n) => typeof n !== 'string')) throw new MalformedDataError(entry.key, 'field "spec.ipNetworks" must be a list of strings');
  return { name: metadata.string('name'), namespace: metadata.optionalString('namespace') ?? 'default', node: spec.string('node'), ipNetworks: ipNetworks as string[] };
}
