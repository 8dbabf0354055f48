/**
 * etcd's own gRPC proxy (`etcd grpc-proxy start`) in front of a test's etcd, started and stopped
 * by pid: on loopback, or inside a fabric namespace on the fabric address (where the simulated
 * hosts reach it). It can be killed and started again on the same port, as a proxy restart.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './etcd';
import { ServerProcess } from './server-process';

/** Where the proxy runs: a fabric namespace and the address it listens on there. */
export interface ProxyPlacement {
  readonly netnsPath: string;
  readonly address: string;
}

/** Above our largest page (4 MiB, shared/datastore/kv.ts): the proxy's default is 1.5 MiB. */
export const PROXY_MAX_SEND_BYTES = 16 << 20;

export class EtcdGrpcProxy {
  private process: ServerProcess | undefined;

  private constructor(
    private readonly dir: string,
    /** host:port of the etcd members, as the proxy dials them. */
    private readonly upstream: readonly string[],
    readonly port: number,
    private readonly placement?: ProxyPlacement,
  ) {}

  static async start(upstream: readonly string[], placement?: ProxyPlacement): Promise<EtcdGrpcProxy> {
    const dir = await mkdtemp(join(tmpdir(), 'etcd-proxy-'));
    const proxy = new EtcdGrpcProxy(dir, upstream.map((u) => u.replace(/^https?:\/\//, '')), placement ? 23790 : await freePort(), placement);
    await proxy.resume();
    return proxy;
  }

  /** Where clients reach the proxy. */
  get endpoint(): string {
    return `http://${this.placement?.address ?? '127.0.0.1'}:${this.port}`;
  }

  async resume(): Promise<void> {
    const args = ['grpc-proxy', 'start', `--endpoints=${this.upstream.join(',')}`, `--listen-addr=${this.placement?.address ?? '127.0.0.1'}:${this.port}`,
      '--data-dir', join(this.dir, 'data'), `--max-send-bytes=${PROXY_MAX_SEND_BYTES}`];
    const [file, fileArgs] = this.placement ? ['nsenter', [`--net=${this.placement.netnsPath}`, 'etcd', ...args]] : ['etcd', args];
    this.process = await ServerProcess.start('etcd grpc-proxy', file, fileArgs, () => this.healthy());
  }

  /** Its /health, asked from inside its namespace when it has one. */
  private async healthy(): Promise<boolean> {
    if (this.placement) {
      const probe = spawn('nsenter', [`--net=${this.placement.netnsPath}`, 'etcdctl', '--endpoints', this.endpoint, '--command-timeout=1s', 'endpoint', 'health'], { stdio: 'ignore', env: { ...process.env, ETCDCTL_API: '3' } });
      return new Promise((resolve) => probe.once('exit', (code) => resolve(code === 0)));
    }
    return new Promise((resolve) => {
      const req = httpRequest(`${this.endpoint}/health`, { timeout: 500 }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
      req.end();
    });
  }

  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.process?.stop(signal);
    this.process = undefined;
  }

  async destroy(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}
