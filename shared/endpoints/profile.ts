/**
 * One profile per network: members may receive from members of the same network and may send
 * anywhere. Created if absent, never overwritten: an operator's edits to the rules stand.
 *
 * Membership is the label the profile applies, under a reserved prefix that user labels can never
 * carry (labels.ts drops them): only being attached to the network makes an endpoint a member.
 */
import { AlreadyExistsError, ConflictError, type Datastore, type Resource } from '../datastore';
import { NETWORK_LABEL_PREFIX } from './labels';

/** The label a network's profile applies to its members. */
export function networkLabel(network: string): string {
  return `${NETWORK_LABEL_PREFIX}${network}`;
}

export function networkProfile(network: string): Resource<'Profile'> {
  return {
    kind: 'Profile',
    apiVersion: 'projectcalico.org/v3',
    metadata: { name: network },
    spec: {
      ingress: [{ action: 'Allow', source: { selector: `has(${networkLabel(network)})` }, destination: {} }],
      egress: [{ action: 'Allow', source: {}, destination: {} }],
      labelsToApply: { [networkLabel(network)]: '' },
    },
  };
}

/**
 * Whether a profile is exactly what earlier releases wrote for the network (membership by the bare
 * network name, which a user label could forge): such a profile was never edited, so it is
 * replaced by today's.
 */
export function isLegacyNetworkProfile(profile: Resource<'Profile'>): boolean {
  const network = profile.metadata.name;
  const legacy = {
    ingress: [{ action: 'Allow', source: { selector: `has(${network})` }, destination: {} }],
    egress: [{ action: 'Allow', source: {}, destination: {} }],
    labelsToApply: { [network]: '' },
  };
  return JSON.stringify(profile.spec) === JSON.stringify(legacy);
}

/** The net-modules keyword netgroup: its members are reachable from everyone. */
export const PUBLIC_PROFILE = 'public';

function publicProfile(): Resource<'Profile'> {
  return {
    kind: 'Profile',
    apiVersion: 'projectcalico.org/v3',
    metadata: { name: PUBLIC_PROFILE },
    spec: { ingress: [{ action: 'Allow', source: {}, destination: {} }], egress: [{ action: 'Allow', source: {}, destination: {} }] },
  };
}

/** The `public` profile, created now if it did not exist; never overwritten. */
async function ensurePublicProfile(ds: Datastore): Promise<Resource<'Profile'>> {
  return (await ds.resources.get('Profile', PUBLIC_PROFILE)) ?? createOrTheirs(ds, publicProfile());
}

async function createOrTheirs(ds: Datastore, profile: Resource<'Profile'>): Promise<Resource<'Profile'>> {
  try {
    return await ds.resources.create(profile);
  } catch (err) {
    // Another host created it between our read and our write: theirs is as good as ours.
    if (err instanceof AlreadyExistsError) return (await ds.resources.get('Profile', profile.metadata.name))!;
    throw err;
  }
}

/** The network's profile, created now if it did not exist (or upgraded if an earlier release wrote it). */
export async function ensureNetworkProfile(ds: Datastore, network: string): Promise<Resource<'Profile'>> {
  const existing = await ds.resources.get('Profile', network);
  if (existing && !isLegacyNetworkProfile(existing)) return existing;
  if (!existing) return createOrTheirs(ds, networkProfile(network));
  try {
    return await ds.resources.update({ ...existing, spec: networkProfile(network).spec });
  } catch (err) {
    // Another host upgraded it between our read and our write: theirs is as good as ours.
    if (err instanceof ConflictError) return (await ds.resources.get('Profile', network))!;
    throw err;
  }
}

/**
 * The profile of a group a workload joins besides its network (a net-modules netgroup, a Mesos
 * NetworkInfo group): `public`, or one like a network's.
 */
export function ensureGroupProfile(ds: Datastore, group: string): Promise<Resource<'Profile'>> {
  return group === PUBLIC_PROFILE ? ensurePublicProfile(ds) : ensureNetworkProfile(ds, group);
}
