/**
 * A real etcd for one test file: free loopback ports, a temp data dir, started and stopped by
 * pid. Optionally with TLS and client-certificate auth.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'node:https';
import { readFileSync } from 'node:fs';

export interface EtcdTls {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export class EtcdServer {
  private process: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  private constructor(
    readonly dataDir: string,
    readonly clientPort: number,
    readonly peerPort: number,
    private readonly tls?: EtcdTls,
  ) {}

  get endpoint(): string {
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.clientPort}`;
  }

  static async start(tls?: EtcdTls): Promise<EtcdServer> {
    const dir = await mkdtemp(join(tmpdir(), 'etcd-test-'));
    const server = new EtcdServer(dir, await freePort(), await freePort(), tls);
    await server.resume();
    return server;
  }

  /** Starts (again) on the same ports and data. */
  async resume(): Promise<void> {
    const peer = `http://127.0.0.1:${this.peerPort}`;
    const args = [
      '--name', 't',
      '--data-dir', join(this.dataDir, 'data'),
      '--listen-client-urls', this.endpoint,
      '--advertise-client-urls', this.endpoint,
      '--listen-peer-urls', peer,
      '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `t=${peer}`,
      '--log-level', 'error',
    ];
    if (this.tls) args.push('--cert-file', this.tls.certFile, '--key-file', this.tls.keyFile, '--trusted-ca-file', this.tls.caFile, '--client-cert-auth');
    const child = spawn('etcd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    this.process = child;
    // If the test process dies without its after hooks, the etcd it started dies with it.
    const killOnExit = () => child.kill('SIGKILL');
    process.once('exit', killOnExit);
    this.exited = new Promise((resolve) => child.once('exit', () => {
      process.off('exit', killOnExit);
      resolve();
    }));
    for (let i = 0; i < 200; i++) {
      if (child.exitCode !== null) throw new Error(`etcd exited: ${stderr}`);
      if (await this.healthy()) return;
      await sleep(50);
    }
    await this.stop();
    throw new Error(`etcd did not become healthy within 10 s: ${stderr}`);
  }

  private async healthy(): Promise<boolean> {
    if (!this.tls) {
      try {
        const res = await fetch(`${this.endpoint}/health`, { signal: AbortSignal.timeout(500) });
        return res.ok;
      } catch {
        return false;
      }
    }
    const tls = this.tls;
    return new Promise((resolve) => {
      const req = request(`${this.endpoint}/health`, {
        ca: readFileSync(tls.caFile), cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile), timeout: 500,
      }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
      req.end();
    });
  }

  /** Stops etcd (SIGKILL: as abrupt as a crash), waiting until the process is gone. */
  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    await this.exited;
    this.process = undefined;
  }

  async destroy(): Promise<void> {
    await this.stop();
    await rm(this.dataDir, { recursive: true, force: true });
  }
}

/** A loopback port nobody listens on now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** A prefix of its own for each test, so tests sharing one etcd never see each other's keys. */
export function uniquePrefix(label: string): string {
  return `/t-${label}-${Math.random().toString(36).slice(2, 8)}/calico`;
}
