/**
 * Stdin and stdout of a short-lived executable through their file descriptors, not
 * process.stdin/stdout: those are streams whose modules node would compile first (about 4 ms of a
 * start-up, measured). A terminal (or /dev/null) gives nothing.
 */
import { fstatSync, read, writeSync } from 'node:fs';

/** A caller that never closes stdin must not hang the process: after this, what came is what there is. */
const STDIN_TIMEOUT_MS = 10_000;

export async function readStdin(): Promise<string> {
  const stat = fstatSync(0);
  if (stat.isCharacterDevice()) return '';
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const buffer = Buffer.alloc(64 << 10);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const timer = setTimeout(finish, STDIN_TIMEOUT_MS);
    const next = () =>
      read(0, buffer, 0, buffer.length, null, (err, n) => {
        if (err || n === 0) return finish();
        chunks.push(Buffer.from(buffer.subarray(0, n)));
        next();
      });
    next();
  });
}

/** Writes the whole text and a newline to stdout, synchronously (the process exits next). */
export function print(text: string): void {
  const bytes = Buffer.from(`${text}\n`);
  for (let at = 0; at < bytes.length; ) {
    try {
      at += writeSync(1, bytes, at);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') return;
    }
  }
}

