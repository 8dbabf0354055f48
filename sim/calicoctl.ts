/** Runs the built calicoctl as an operator does, timing it and reading its peak memory. */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';

export interface CtlRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly seconds: number;
  /** Peak resident memory of the calicoctl process, from GNU time. */
  readonly peakMb: number;
}

export function runCalicoctl(args: readonly string[], env: Record<string, string>, input = ''): Promise<CtlRun> {
  const started = process.hrtime.bigint();
  return new Promise((done) => {
    const child = execFile('/usr/bin/time', ['-f', 'peak-kb=%M', resolve('dist/bin/calicoctl'), ...args], { env: { PATH: process.env.PATH ?? '', ...env }, maxBuffer: 512 << 20 }, (err, stdout, stderr) => {
      const peak = /peak-kb=(\d+)\s*$/.exec(stderr);
      done({
        code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0,
        stdout,
        stderr: peak ? stderr.slice(0, peak.index) : stderr,
        seconds: Number(process.hrtime.bigint() - started) / 1e9,
        peakMb: peak ? Number(peak[1]) / 1024 : NaN,
      });
    });
    child.stdin!.end(input);
  });
}
