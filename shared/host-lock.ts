/**
 * A lock held by one operation at a time on this host, across processes (the plugin run alone and
 * the node daemon alike): an abstract unix socket bound under the lock's name. The kernel lets one
 * socket bind a name and frees it when its process dies, so a crash never leaves a lock behind,
 * and there is no file to clean up. Abstract names belong to the network namespace, which is the
 * host's for every caller (the plugin and the daemon run there).
 */
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { CalicoError } from './errors';

/** Another operation held the lock for longer than the caller would wait. */
export class LockBusyError extends CalicoError {
  readonly code = 'LOCK_BUSY';

  constructor(what: string, waitedMs: number) {
    super(`another operation on ${what} is still in progress after ${waitedMs} ms: try again later`);
  }
}

const RETRY_MS = { first: 5, most: 200 };

/**
 * Runs `work` while holding the lock named `key` (any string: it is hashed), waiting at most
 * `waitMs` for it. `what` names the locked thing in the error.
 */
export async function withHostLock<T>(key: string, what: string, waitMs: number, work: () => Promise<T>): Promise<T> {
  const server = await acquire(`\0calico-lock-${createHash('sha256').update(key).digest('hex').slice(0, 40)}`, what, waitMs);
  try {
    return await work();
  } finally {
    server.close();
  }
}

async function acquire(name: string, what: string, waitMs: number): Promise<Server> {
  const started = Date.now();
  for (let delay = RETRY_MS.first; ; delay = Math.min(delay * 2, RETRY_MS.most)) {
    const server = createServer();
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(name, () => {
          server.off('error', reject);
          resolve();
        });
      });
      // A held lock never keeps a finished process alive.
      server.unref();
      return server;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      const waited = Date.now() - started;
      if (waited >= waitMs) throw new LockBusyError(what, waited);
      await new Promise((resolve) => setTimeout(resolve, Math.min(delay, waitMs - waited)));
    }
  }
}
