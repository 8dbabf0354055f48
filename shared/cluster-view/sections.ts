/**
 * What the cluster view keeps of each prefix it follows, and how a key and its value become one of
 * its records. Records are decoded once, as they arrive; no raw JSON is kept. A malformed value
 * counts as absent (it is reported once, by decodeEach's channel): routing goes on without it.
 */
import { MalformedDataError, decodeAffinity, decodeEach, decodeResource, type Datastore, type Entry, type Resource } from '../datastore';
import { messageOf } from '../errors';
import { encapsulationOf, type PoolEncapsulation } from '../ipam/pool';
import { formatCidr, parseCidr, type Cidr } from '../net/cidr';

/** A pool as the keepers need it: where its blocks are and how they are reached. */
export interface ViewPool extends PoolEncapsulation {
  readonly name: string;
  readonly disabled: boolean;
}

/** A host's affinity to a block; only confirmed ones are routed. */
export interface ViewAffinity {
  readonly host: string;
  readonly cidr: Cidr;
  readonly confirmed: boolean;
}

export interface ViewRecords {
  pool: ViewPool;
  node: Resource<'Node'>;
  affinity: ViewAffinity;
  bgpConfiguration: Resource<'BGPConfiguration'>;
  bgpPeer: Resource<'BGPPeer'>;
}

export type SectionKind = keyof ViewRecords;

export interface Section<K extends SectionKind> {
  readonly kind: K;
  readonly prefix: string;
  /** The record's identity from its key alone (deletes carry no value); undefined for a key of another shape. */
  idOf(key: string): string | undefined;
  /** Throws MalformedDataError for a value that does not check out. */
  decode(entry: Entry): ViewRecords[K];
}

export type AnySection = { [K in SectionKind]: Section<K> }[SectionKind];

/** The record an entry holds; undefined for a key of another shape or a malformed value. */
export function recordOf<K extends SectionKind>(section: Section<K>, entry: Entry): { id: string; record: ViewRecords[K] } | undefined {
  const id = section.idOf(entry.key);
  if (id === undefined) return undefined;
  const [record] = decodeEach([entry], (e) => section.decode(e));
  return record === undefined ? undefined : { id, record };
}

export function sectionsOf(ds: Datastore): AnySection[] {
  const { keys } = ds;
  const resourceSection = <K extends SectionKind>(kind: K, resource: 'IPPool' | 'Node' | 'BGPConfiguration' | 'BGPPeer', decode: (entry: Entry) => ViewRecords[K]): Section<K> => {
    const prefix = keys.resourcePrefix(resource);
    return { kind, prefix, decode, idOf: (key) => (keys.resourceOf(key)?.kind === resource ? key.slice(prefix.length) : undefined) };
  };
  return [
    resourceSection('pool', 'IPPool', decodePool),
    resourceSection('node', 'Node', (entry) => decodeResource('Node', entry)),
    resourceSection('bgpConfiguration', 'BGPConfiguration', (entry) => decodeResource('BGPConfiguration', entry)),
    resourceSection('bgpPeer', 'BGPPeer', (entry) => decodeResource('BGPPeer', entry)),
    {
      kind: 'affinity',
      prefix: keys.affinitiesPrefix(),
      idOf: (key) => {
        const named = keys.affinityOf(key);
        return named ? affinityId(named.host, named.cidr) : undefined;
      },
      decode: (entry) => {
        const named = keys.affinityOf(entry.key)!;
        return { host: named.host, cidr: named.cidr, confirmed: decodeAffinity(entry.key, entry.value).state === 'confirmed' };
      },
    },
  ];
}

export function affinityId(host: string, cidr: Cidr): string {
  return `${host} ${formatCidr(cidr)}`;
}

function decodePool(entry: Entry): ViewPool {
  const pool = decodeResource('IPPool', entry);
  try {
    return { name: pool.metadata.name, ...encapsulationOf(parseCidr(pool.spec.cidr, 'spec.cidr'), pool.spec), disabled: pool.spec.disabled === true };
  } catch (err) {
    throw new MalformedDataError(entry.key, messageOf(err));
  }
}
