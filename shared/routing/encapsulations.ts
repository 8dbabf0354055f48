/**
 * Every encapsulation the hosts use, in one place, with what isolation needs to know of it: how its
 * packets are told apart (an nftables match on the outer packet), the FelixConfiguration field that
 * lets workloads send such packets themselves (Calico's names; off by default), and its overhead.
 *
 * A packet of one of these, sent by a workload, would be decapsulated by a host and its inner packet
 * delivered with whatever source it forged, past policy. So workloads may not send them, and hosts
 * accept them only from the addresses of known Nodes (shared/policy/ruleset.ts). An encapsulation
 * added later is added here, and the isolation tests' template (test/integration/encapsulation.test.ts)
 * runs against it.
 */
export interface Encapsulation {
  readonly name: 'vxlan' | 'ipip';
  /** Matches its outer packets (either IP family). */
  readonly match: string;
  /** The FelixConfiguration field that lets workloads send it. */
  readonly allowFromWorkloads: 'allowVXLANPacketsFromWorkloads' | 'allowIPIPPacketsFromWorkloads';
  /** What it adds to a packet. */
  readonly overhead: number;
}

/** VXLAN's UDP port and network identifier, as Calico uses them. */
export const VXLAN_PORT = 4789;
export const VXLAN_VNI = 4096;

export const ENCAPSULATIONS: readonly Encapsulation[] = [
  // Outer IPv4 header, UDP, VXLAN and the inner Ethernet header.
  { name: 'vxlan', match: `udp dport ${VXLAN_PORT}`, allowFromWorkloads: 'allowVXLANPacketsFromWorkloads', overhead: 50 },
  // IP protocol 4: an outer IPv4 header.
  { name: 'ipip', match: 'meta l4proto ipip', allowFromWorkloads: 'allowIPIPPacketsFromWorkloads', overhead: 20 },
];

export const ENCAPSULATION_OVERHEAD: Readonly<Record<Encapsulation['name'], number>> = Object.fromEntries(ENCAPSULATIONS.map((e) => [e.name, e.overhead])) as Record<Encapsulation['name'], number>;
