/**
 * Giving back what a workload owns, and nothing else: the one place every path (CNI DEL and GC,
 * Docker, the daemon's garbage collection) releases a workload's addresses.
 */
import type { OwnerTest } from '../ipam/block';
import type { CompanionOutcome, Ipam, ReleaseCompanion } from '../ipam/ipam';
import type { IpAddress } from '../net/address';
import { handleOf, isDockerHandle, legacyCniHandle, ownsLegacyAllocation, type CniAttachment, type Workload } from './identity';

/** Addresses of this host's Docker IPAM driver: the only ones Docker's calls release or claim for an endpoint. */
export function dockerOwned(node: string): OwnerTest {
  return (attribute) => attribute.handle_id !== null && isDockerHandle(attribute.handle_id) && attribute.secondary?.node === node;
}

/** Whether an allocation under the legacy `<network>.<container>` handle is this attachment's. */
function legacyOwner(attachment: CniAttachment): OwnerTest {
  const handle = legacyCniHandle(attachment.network, attachment.containerId);
  return (attribute) => ownsLegacyAllocation(attachment, handle, attribute.secondary);
}

/**
 * A CNI attachment's addresses: its handle's, and what earlier releases gave it under the legacy
 * handle. Submitted together, the two are served by one batch and one transaction (see
 * releaser.ts), which also deletes `companion` (the attachment's endpoint record) where it is the
 * attachment's.
 * `record`: what became of the companion (undefined: none given, or it could not be judged).
 */
export async function releaseAttachmentAddresses(ipam: Ipam, attachment: CniAttachment, companion?: ReleaseCompanion): Promise<{ released: number; record: CompanionOutcome | undefined }> {
  const [own, legacy] = await Promise.all([
    ipam.releaseHandle(handleOf(attachment), companion ? { companion } : {}),
    ipam.releaseByHandle(legacyCniHandle(attachment.network, attachment.containerId), legacyOwner(attachment)),
  ]);
  return { released: own.released.length + legacy, record: own.companion };
}

/**
 * Releases the workload's addresses: a CNI attachment's handle (and what earlier releases gave a
 * CNI attachment under the legacy handle, where its attributes say so), a Docker endpoint's
 * `addresses` where this host's driver gave them to that endpoint, a net-modules container's
 * `addresses` where one of its recorded `ipamHandles` owns them.
 * Returns how many were released.
 */
export async function releaseWorkloadAddresses(ipam: Ipam, workload: Workload, addresses: readonly IpAddress[] = [], ipamHandles: readonly string[] = []): Promise<number> {
  switch (workload.orchestrator) {
    case 'cni':
      return (await releaseAttachmentAddresses(ipam, workload)).released;
    case 'mesos': {
      // A net-modules container's addresses were allocated under the isolator's uid: the handles
      // its endpoint recorded own them.
      const owners = new Set(ipamHandles);
      return (await ipam.release(addresses, (a) => a.handle_id !== null && owners.has(a.handle_id))).released.length;
    }
    case 'libnetwork': {
      const docker = dockerOwned(workload.node);
      const owns: OwnerTest = (a) => docker(a) && a.secondary?.endpoint === workload.endpointId;
      return (await ipam.release(addresses, owns)).released.length;
    }
  }
}
