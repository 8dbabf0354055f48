/**
 * create / apply / replace / delete / get of v3 resources for calicoctl, with the same checks the
 * product makes elsewhere: pools validated and never overlapping, the IPAM configuration mapped to
 * its own key, a pool with addresses in use never deleted.
 */
import type { Datastore, Resource } from '../shared/datastore';
import { isNamespaced } from '../shared/datastore/keys';
import { API_VERSION } from '../shared/datastore/resources';
import { PolicyValidationError, policyTypes, validateFelixConfiguration, validatePolicy, validateProfile } from '../shared/policy/validate';
import { BgpValidationError, validateBgpConfiguration, validateBgpPeer } from '../shared/routing/bgp-resources';
import type { Ipam } from '../shared/ipam/ipam';
import { poolHolds, validatePoolSpec } from '../shared/ipam/pool';
import { formatCidr } from '../shared/net';
import type { CtlKind, Document } from './documents';
import { CtlError } from './errors';

export interface CtlResource {
  apiVersion: typeof API_VERSION;
  kind: CtlKind;
  metadata: Record<string, unknown> & { name: string };
  spec: Record<string, unknown>;
}

const IPAM_CONFIG_NAME = 'default';

/**
 * Policies, profiles, the Felix configuration and the BGP kinds are checked as the daemon will
 * read them: a bad selector, rule, address or AS number is refused with its field (and position),
 * and nothing is written.
 */
function checkKind(doc: Document): void {
  const resource = { kind: doc.kind, metadata: doc.metadata, spec: doc.spec };
  try {
    if (doc.kind === 'GlobalNetworkPolicy' || doc.kind === 'NetworkPolicy') validatePolicy(resource);
    if (doc.kind === 'Profile') validateProfile(resource);
    if (doc.kind === 'FelixConfiguration') validateFelixConfiguration(resource);
    if (doc.kind === 'BGPConfiguration') validateBgpConfiguration(resource);
    if (doc.kind === 'BGPPeer') validateBgpPeer(resource);
  } catch (err) {
    if (err instanceof PolicyValidationError || err instanceof BgpValidationError) throw new CtlError(`${doc.where}: ${doc.kind} "${doc.metadata.name}": ${err.message}`);
    throw err;
  }
}

/** The spec as written: a policy's types defaulted from its rules when it has none, as Calico writes them. */
function writtenSpec(doc: Document): Record<string, unknown> {
  if (doc.kind !== 'GlobalNetworkPolicy' && doc.kind !== 'NetworkPolicy') return doc.spec;
  return { ...doc.spec, types: policyTypes(doc.spec) };
}

export class ResourceClient {
  constructor(
    private readonly ds: Datastore,
    private readonly ipam: Ipam,
  ) {}

  async get(kind: CtlKind, name?: string, namespace?: string): Promise<CtlResource[]> {
    if (kind === 'IPAMConfiguration') return [await this.ipamConfiguration()];
    const all = name
      ? [await this.ds.resources.get(kind, name, namespace)].filter((r) => r !== undefined)
      : await this.ds.resources.list(kind, namespace, { skipMalformed: true });
    if (name && all.length === 0) throw new CtlError(`${kind} "${name}" does not exist`);
    return all.map((r) => ({ apiVersion: API_VERSION, kind, metadata: { ...r.metadata }, spec: r.spec as unknown as Record<string, unknown> }));
  }

  async create(doc: Document): Promise<void> {
    if (doc.kind === 'IPAMConfiguration') return this.writeIpamConfiguration(doc);
    if (doc.kind === 'IPPool') {
      await this.ipam.createPool(doc.metadata.name, doc.spec as never).catch((err: Error) => {
        throw new CtlError(`${doc.where}: ${err.message}`);
      });
      return;
    }
    checkKind(doc);
    const existing = await this.ds.resources.get(doc.kind, doc.metadata.name, this.namespaceOf(doc));
    if (existing) throw new CtlError(`${doc.where}: ${doc.kind} "${doc.metadata.name}" already exists (use apply or replace)`);
    await this.ds.resources.create(this.resourceOf(doc));
  }

  /** Creates, or updates what exists (guarded by the document's resourceVersion when it has one). */
  async apply(doc: Document): Promise<void> {
    if (doc.kind === 'IPAMConfiguration') return this.writeIpamConfiguration(doc);
    const existing = await this.ds.resources.get(doc.kind, doc.metadata.name, this.namespaceOf(doc));
    if (!existing) return this.create(doc);
    return this.update(doc, existing);
  }

  async replace(doc: Document): Promise<void> {
    if (doc.kind === 'IPAMConfiguration') return this.writeIpamConfiguration(doc);
    const existing = await this.ds.resources.get(doc.kind, doc.metadata.name, this.namespaceOf(doc));
    if (!existing) throw new CtlError(`${doc.where}: ${doc.kind} "${doc.metadata.name}" does not exist (use create or apply)`);
    return this.update(doc, existing);
  }

  async delete(kind: CtlKind, name: string, namespace?: string): Promise<void> {
    if (kind === 'IPAMConfiguration' || kind === 'ClusterInformation') throw new CtlError(`${kind} cannot be deleted`);
    if (kind === 'IPPool') await this.refuseBusyPool(name);
    if (!(await this.ds.resources.delete(kind, name, namespace))) throw new CtlError(`${kind} "${name}" does not exist`);
  }

  private async update(doc: Document, existing: Resource): Promise<void> {
    let spec = writtenSpec(doc);
    if (doc.kind === 'IPPool') {
      const { cidr, spec: full } = validateOrExplain(doc);
      if (formatCidr(cidr) !== (existing.spec as { cidr: string }).cidr) {
        throw new CtlError(`${doc.where}: the cidr of pool "${doc.metadata.name}" cannot change; create a new pool and disable this one`);
      }
      await this.ipam.checkPool(doc.metadata.name, cidr).catch((err: Error) => {
        throw new CtlError(`${doc.where}: ${err.message}`);
      });
      spec = full as unknown as Record<string, unknown>;
    }
    checkKind(doc);
    const resourceVersion = doc.metadata.resourceVersion ?? existing.metadata.resourceVersion;
    const updated = { ...existing, metadata: { ...existing.metadata, ...doc.metadata, resourceVersion }, spec } as Resource;
    await this.ds.resources.update(updated).catch((err: Error & { code?: string }) => {
      if (err.code === 'DATASTORE_CONFLICT') throw new CtlError(`${doc.where}: ${doc.kind} "${doc.metadata.name}" changed since resourceVersion ${resourceVersion}; get it again`);
      throw err;
    });
  }

  private namespaceOf(doc: Document): string | undefined {
    return isNamespaced(doc.kind as never) ? (doc.metadata.namespace ?? 'default') : undefined;
  }

  private resourceOf(doc: Document): Resource {
    const { resourceVersion: _ignored, ...metadata } = doc.metadata;
    return { kind: doc.kind, apiVersion: API_VERSION, metadata: { ...metadata, ...(this.namespaceOf(doc) ? { namespace: this.namespaceOf(doc) } : {}) }, spec: writtenSpec(doc) } as unknown as Resource;
  }

  private async refuseBusyPool(name: string): Promise<void> {
    const pool = (await this.ipam.pools()).find((p) => p.name === name);
    if (!pool) return;
    let inUse = 0;
    for await (const page of this.ipam.blockPages()) for (const b of page) if (poolHolds(pool, b.cidr)) inUse += b.inUse;
    if (inUse > 0) throw new CtlError(`pool ${name} still has ${inUse} address(es) in use: disable it (disabled: true), let its workloads go, then delete it`);
  }

  private async ipamConfiguration(): Promise<CtlResource> {
    const config = await this.ipam.config();
    return {
      apiVersion: API_VERSION,
      kind: 'IPAMConfiguration',
      metadata: { name: IPAM_CONFIG_NAME },
      spec: { strictAffinity: config.strict_affinity, maxBlocksPerHost: config.maxBlocksPerHost, autoAllocateBlocks: config.auto_allocate_blocks },
    };
  }

  private async writeIpamConfiguration(doc: Document): Promise<void> {
    if (doc.metadata.name !== IPAM_CONFIG_NAME) throw new CtlError(`${doc.where}: the IPAMConfiguration is named "${IPAM_CONFIG_NAME}"`);
    const current = (await this.ipamConfiguration()).spec;
    const spec = { ...current, ...doc.spec };
    const bool = (field: string) => {
      if (typeof spec[field] !== 'boolean') throw new CtlError(`${doc.where}: spec.${field} must be true or false`);
      return spec[field] as boolean;
    };
    const max = spec.maxBlocksPerHost;
    if (!Number.isInteger(max) || (max as number) < 0) throw new CtlError(`${doc.where}: spec.maxBlocksPerHost must be a whole number, 0 for no limit`);
    await this.ipam.setConfig({ strict_affinity: bool('strictAffinity'), auto_allocate_blocks: bool('autoAllocateBlocks'), maxBlocksPerHost: max as number });
  }
}

function validateOrExplain(doc: Document) {
  try {
    return validatePoolSpec(doc.metadata.name, doc.spec as never);
  } catch (err) {
    throw new CtlError(`${doc.where}: ${(err as Error).message}`);
  }
}
