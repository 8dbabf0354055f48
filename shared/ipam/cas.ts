/** The compare-and-swap retry loop every IPAM write runs in. */
import { setTimeout as sleep } from 'node:timers/promises';
import { casConflicts, casExhausted } from '../diagnostics';
import { ExcessiveConflictsError } from './errors';

/** What one round of a CAS loop ended with. */
export type Round<T> = { readonly done: T } | 'conflict' | 'again';

export const DEFAULT_MAX_CONFLICTS = 100;

/**
 * Runs `round` until it is done. A first conflict re-runs at once: most often it only means a
 * cached block was stale, and the failed transaction brought its current value. Further
 * conflicts (someone else keeps writing first) sleep a random, growing while so that contenders
 * spread out. 'again' re-runs at once (the round made progress, such as claiming a block). Any
 * thrown error stops the loop. Running out is an error.
 */
export async function casLoop<T>(operation: string, round: () => Promise<Round<T>>, maxConflicts = DEFAULT_MAX_CONFLICTS): Promise<T> {
  let conflicts = 0;
  for (let rounds = 0; rounds < maxConflicts * 4; rounds++) {
    const outcome = await round();
    if (outcome === 'again') continue;
    if (outcome !== 'conflict') return outcome.done;
    if (casConflicts.hasSubscribers) casConflicts.publish({ operation });
    if (++conflicts >= maxConflicts) break;
    if (conflicts > 1) await sleep(Math.random() * Math.min(100, 5 + conflicts * 5));
  }
  if (casExhausted.hasSubscribers) casExhausted.publish({ operation });
  throw new ExcessiveConflictsError(operation, conflicts);
}
