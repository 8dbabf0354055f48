/**
 * One profile per network: members may receive from members of the same network and may send
 * anywhere. Created if absent, never overwritten: an operator's edits to the rules stand.
 *
 * Membership is the label the profile applies, under a reserved prefix that user labels can never
 * carry (labels.ts drops them): only being attached to the network makes an endpoint a member.
 */
import { AlreadyExistsError, type Datastore, type Resource } from '../datastore';
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

/** The network's profile, created now if it did not exist (or upgraded if an earlier release wrote it). */
export async function ensureNetworkProfile(ds: Datastore, network: string): Promise<Resource<'Profile'>> {
  const existing = await ds.resources.get('Profile', network);
  if (existing && !isLegacyNetworkProfile(existing)) return existing;
  try {
    if (existing) return await ds.resources.update({ ...existing, spec: networkProfile(network).spec });
    return await ds.resources.create(networkProfile(network));
  } catch (err) {
    // Another host wrote it between our read and our write: theirs is as good as ours.
    if (err instanceof AlreadyExistsError || (err as { code?: string }).code === 'DATASTORE_CONFLICT') return (await ds.resources.get('Profile', network))!;
    throw err;
  }
}
