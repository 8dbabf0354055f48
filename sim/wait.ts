import { setTimeout as sleep } from 'node:timers/promises';

/** Polls `check` every `everyMs` (50) until it holds; throws after `ms`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms: number, everyMs = 50): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(everyMs);
  }
  throw new Error(`${what} did not happen within ${ms} ms`);
}
