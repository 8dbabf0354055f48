/**
 * Our nftables table on this host, as a whole: its fixed part made sure of (every workload closed
 * until its endpoint is programmed: shared/policy/ruleset.ts), or the table removed when a host
 * enforces no policy. The node daemon does the first at start; a plugin that runs without the
 * daemon does it before it wires a veth.
 */
import { FIXED_PART, FIXED_TABLE, TABLE } from '../policy/ruleset';
import { applyNftScript, deleteNftTable } from './nftables';

/** The fixed part added to whatever the table holds, or the table replaced by it when the two do not fit together (a table of an older release). */
export async function installPolicyTable(): Promise<void> {
  await applyNftScript('install the policy table', FIXED_PART).catch(() => applyNftScript('replace the policy table', FIXED_TABLE));
}

export async function removePolicyTable(): Promise<void> {
  await deleteNftTable(TABLE);
}
