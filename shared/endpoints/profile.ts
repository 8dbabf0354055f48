/**
 * One profile per network: members may receive from members of the same network and may send
 * anywhere. Created if absent, never overwritten: an operator's edits to the rules stand.
 */
import { AlreadyExistsError, type Datastore, type Resource } from '../datastore';

export function networkProfile(network: string): Resource<'Profile'> {
  return {
    kind: 'Profile',
    apiVersion: 'projectcalico.org/v3',
    metadata: { name: network },
    spec: {
      ingress: [{ action: 'Allow', source: { selector: `has(${network})` }, destination: {} }],
      egress: [{ action: 'Allow', source: {}, destination: {} }],
      labelsToApply: { [network]: '' },
    },
  };
}

/** The network's profile, created now if it did not exist. */
export async function ensureNetworkProfile(ds: Datastore, network: string): Promise<Resource<'Profile'>> {
  const existing = await ds.resources.get('Profile', network);
  if (existing) return existing;
  try {
    return await ds.resources.create(networkProfile(network));
  } catch (err) {
    // Another host created it between our read and our write: theirs is as good as ours.
    if (err instanceof AlreadyExistsError) return (await ds.resources.get('Profile', network))!;
    throw err;
  }
}
