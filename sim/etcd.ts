/**
 * A real etcd for one test file, started and stopped by pid, with a temp data dir.
 * - On loopback (default): free ports, optionally TLS with client-certificate auth.
 * - Inside a fabric namespace: listening on the fabric address for the simulated hosts, and on a
 *   unix socket for the test process itself (sockets are not confined to a network namespace).
 */
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServerProcess } from './server-process';

export interface EtcdTls {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export interface EtcdPlacement {
  /** Network namespace to run in. */
  readonly netnsPath: string;
  /** The address hosts reach it on inside that namespace. */
  readonly address: string;
  /** For a member of a cluster: its index (ports 2379+10i, 2380+10i) and the cluster's size. */
  readonly member?: { readonly index: number; readonly of: number };
}

/** Members of a cluster run under groups MEMBER_GID_BASE + index (no such groups exist on the machine). */
const MEMBER_GID_BASE = 61_000;

export class EtcdServer {
  private process: ServerProcess | undefined;

  private constructor(
    readonly dataDir: string,
    readonly clientPort: number,
    readonly peerPort: number,
    private readonly tls?: EtcdTls,
    private readonly placement?: EtcdPlacement,
    private readonly flags: readonly string[] = [],
  ) {}

  /** Where this test process reaches etcd. */
  get endpoint(): string {
    if (this.placement) return `unix://${this.socketPath}`;
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.clientPort}`;
  }

  /** Where processes inside the fabric's hosts reach etcd. */
  get hostEndpoint(): string {
    return this.placement ? `http://${this.placement.address}:${this.clientPort}` : this.endpoint;
  }

  private get socketPath(): string {
    return join(this.dataDir, 'etcd.sock:0');
  }

  private get name(): string {
    return `m${this.placement?.member?.index ?? 0}`;
  }

  /** `flags`: more of etcd's own, as they are (`--auth-token-ttl 1`). */
  static async start(options: { tls?: EtcdTls; placement?: EtcdPlacement; flags?: readonly string[] } = {}): Promise<EtcdServer> {
    const dir = await mkdtemp(join(tmpdir(), 'etcd-test-'));
    const offset = 10 * (options.placement?.member?.index ?? 0);
    const ports = options.placement ? [2379 + offset, 2380 + offset] : [await freePort(), await freePort()];
    const server = new EtcdServer(dir, ports[0]!, ports[1]!, options.tls, options.placement, options.flags);
    await server.resume();
    return server;
  }

  /** Starts (again) on the same ports and data. */
  async resume(): Promise<void> {
    const peer = `http://127.0.0.1:${this.peerPort}`;
    // etcd takes a unix listener as unix://NAME:PORT, a file NAME:PORT in its working directory.
    const listen = this.placement ? `unix://etcd.sock:0,${this.hostEndpoint}` : this.endpoint;
    const members = this.placement?.member?.of ?? 1;
    const cluster = Array.from({ length: members }, (_, i) => `m${i}=http://127.0.0.1:${2380 + 10 * i}`).join(',');
    const args = [
      '--name', this.name,
      '--data-dir', join(this.dataDir, 'data'),
      '--listen-client-urls', listen,
      '--advertise-client-urls', this.hostEndpoint,
      '--listen-peer-urls', peer,
      '--initial-advertise-peer-urls', peer,
      '--initial-cluster', members > 1 ? cluster : `${this.name}=${peer}`,
      '--log-level', 'error',
      ...this.flags,
    ];
    // Docker's cluster store speaks etcd's v2 API.
    if (this.placement) args.push('--enable-v2=true');
    if (this.tls) args.push('--cert-file', this.tls.certFile, '--key-file', this.tls.keyFile, '--trusted-ca-file', this.tls.caFile, '--client-cert-auth');
    // A killed etcd leaves its unix socket behind, and will not listen on it again.
    if (this.placement) rmSync(this.socketPath, { force: true });
    // A member runs under a group of its own, so that a firewall can tell its packets (cutOff).
    const etcd = this.placement?.member ? ['setpriv', '--regid', String(this.gid), '--clear-groups', 'etcd'] : ['etcd'];
    const [file, fileArgs] = this.placement ? ['nsenter', [`--net=${this.placement.netnsPath}`, ...etcd, ...args]] : ['etcd', args];
    this.process = await ServerProcess.start('etcd', file, fileArgs, () => this.healthy(), this.dataDir);
  }

  /** The group a cluster member runs under (its sockets' owner, as nft's `meta skgid` sees them). */
  get gid(): number {
    return MEMBER_GID_BASE + (this.placement?.member?.index ?? 0);
  }

  /** Whether this member leads its cluster now (its own metrics say; false when it does not answer). */
  isLeader(): Promise<boolean> {
    return new Promise((resolve) => {
      if (!this.placement) return resolve(true);
      const req = httpRequest({ socketPath: this.socketPath, path: '/metrics', timeout: 1000 }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(/^etcd_server_is_leader 1$/m.test(body)));
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
      req.end();
    });
  }

  private healthy(): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (res: import('node:http').IncomingMessage) => {
        res.resume();
        resolve(res.statusCode === 200);
      };
      const req = this.placement
        ? httpRequest({ socketPath: this.socketPath, path: '/health', timeout: 500 }, done)
        : this.tls
          ? httpsRequest(`${this.endpoint}/health`, { ca: readFileSync(this.tls.caFile), cert: readFileSync(this.tls.certFile), key: readFileSync(this.tls.keyFile), timeout: 500 }, done)
          : httpRequest(`${this.endpoint}/health`, { timeout: 500 }, done);
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
      req.end();
    });
  }

  /** Freezes etcd (SIGSTOP): it keeps its connections and answers nothing, as a hung server. */
  freeze(): void {
    this.process?.signal('SIGSTOP');
  }

  thaw(): void {
    this.process?.signal('SIGCONT');
  }

  /** Stops etcd (SIGKILL by default: as abrupt as a crash), waiting until the process is gone. */
  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.process?.stop(signal);
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

