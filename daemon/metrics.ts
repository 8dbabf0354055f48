/**
 * Prometheus metrics of the node daemon, in the text exposition format, on a local address:
 * requests by driver, call and outcome with their durations; addresses in use per pool and host;
 * CAS conflicts and exhausted retries; etcd errors. No per-container labels: cardinality stays
 * bounded by calls, pools and hosts.
 */
import { subscribe } from 'node:diagnostics_channel';
import { createServer, type Server } from 'node:http';
import { addPhases, casConflicts, casExhausted, etcdErrors } from '../shared/diagnostics';
import type { Ipam } from '../shared/ipam/ipam';
import { poolHolds } from '../shared/ipam/pool';
import { formatCidr } from '../shared/net';
import type { Logger } from '../shared/log';
import { HTTP_LIMITS } from '../shared/request-limits';

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** How long a computed IPAM usage is served before it is read again from etcd. */
const USAGE_CACHE_MS = 5000;

type Labels = Record<string, string>;

const labelText = (labels: Labels) => {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return pairs.length ? `{${pairs.join(',')}}` : '';
};

class Counter {
  private readonly values = new Map<string, { labels: Labels; value: number }>();

  constructor(readonly name: string, readonly help: string) {}

  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    const entry = this.values.get(key) ?? { labels, value: 0 };
    entry.value += by;
    this.values.set(key, entry);
  }

  render(): string[] {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`, ...[...this.values.values()].map((e) => `${this.name}${labelText(e.labels)} ${e.value}`)];
  }
}

class Histogram {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();

  constructor(readonly name: string, readonly help: string) {}

  observe(labels: Labels, seconds: number): void {
    const key = labelText(labels);
    const entry = this.series.get(key) ?? { labels, counts: BUCKETS.map(() => 0), sum: 0, count: 0 };
    BUCKETS.forEach((le, i) => {
      if (seconds <= le) entry.counts[i]!++;
    });
    entry.sum += seconds;
    entry.count++;
    this.series.set(key, entry);
  }

  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const e of this.series.values()) {
      BUCKETS.forEach((le, i) => lines.push(`${this.name}_bucket${labelText({ ...e.labels, le: String(le) })} ${e.counts[i]}`));
      lines.push(`${this.name}_bucket${labelText({ ...e.labels, le: '+Inf' })} ${e.count}`, `${this.name}_sum${labelText(e.labels)} ${e.sum}`, `${this.name}_count${labelText(e.labels)} ${e.count}`);
    }
    return lines;
  }
}

export class Metrics {
  private readonly requests = new Counter('calico_requests_total', 'Requests served, by driver (cni, network, ipam), call and outcome.');
  private readonly durations = new Histogram('calico_request_duration_seconds', 'Time to serve a request, by driver and call.');
  private readonly conflicts = new Counter('calico_ipam_cas_conflicts_total', 'IPAM compare-and-swap rounds lost to a concurrent writer and retried.');
  private readonly exhausted = new Counter('calico_ipam_cas_retries_exhausted_total', 'IPAM operations that gave up after too many conflicts.');
  private readonly etcd = new Counter('calico_etcd_errors_total', 'etcd calls that failed, by kind (unavailable, request).');
  private readonly addPhases = new Histogram('calico_cni_add_phase_seconds', 'Time a CNI ADD served by the daemon spends in each phase (lookup, ipam, profile, dataplane, record).');
  private server: Server | undefined;
  private usage: { at: number; lines: string[] } | undefined;

  constructor(
    private readonly ipam: () => Promise<Ipam>,
    private readonly node: string,
    private readonly log: Logger,
  ) {
    subscribe(casConflicts.name, (message) => this.conflicts.inc({ operation: operationOf(message) }));
    subscribe(casExhausted.name, (message) => this.exhausted.inc({ operation: operationOf(message) }));
    subscribe(etcdErrors.name, (message) => this.etcd.inc({ kind: String((message as { kind?: string }).kind ?? 'unknown') }));
    subscribe(addPhases.name, (message) => {
      for (const [phase, seconds] of Object.entries((message as { phases: Record<string, number> }).phases)) this.addPhases.observe({ phase }, seconds);
    });
  }

  /** Records one served request. */
  request(driver: string, call: string, ok: boolean, seconds: number): void {
    this.requests.inc({ driver, call, outcome: ok ? 'ok' : 'error' });
    this.durations.observe({ driver, call }, seconds);
  }

  async render(): Promise<string> {
    const lines = [...this.requests.render(), ...this.durations.render(), ...this.conflicts.render(), ...this.exhausted.render(), ...this.etcd.render(), ...this.addPhases.render(), ...(await this.ipamUsage())];
    return `${lines.join('\n')}\n`;
  }

  /**
   * Addresses in use in this host's blocks, per pool, read from etcd at most every few seconds.
   * Only this host's keys: every daemon reports its own host, so a scrape costs the same however
   * large the cluster grows.
   */
  private async ipamUsage(): Promise<string[]> {
    if (this.usage && Date.now() - this.usage.at < USAGE_CACHE_MS) return this.usage.lines;
    const name = 'calico_ipam_addresses_in_use';
    const lines = [`# HELP ${name} Addresses allocated in this host's blocks, by pool.`, `# TYPE ${name} gauge`];
    try {
      const ipam = await this.ipam();
      const pools = await ipam.pools();
      const totals = new Map<string, number>();
      for (const block of await ipam.hostBlockUsage(this.node)) {
        const pool = pools.find((p) => poolHolds(p, block.cidr));
        const key = labelText({ pool: pool ? formatCidr(pool.cidr) : 'none', host: this.node });
        totals.set(key, (totals.get(key) ?? 0) + block.inUse);
      }
      for (const [key, value] of totals) lines.push(`${name}${key} ${value}`);
    } catch (err) {
      this.log.debug('cannot read IPAM usage for metrics', { error: (err as Error).message });
      return lines;
    }
    this.usage = { at: Date.now(), lines };
    return lines;
  }

  async listen(address: string): Promise<void> {
    const match = /^(.*):(\d+)$/.exec(address);
    if (!match) throw new Error(`--metrics-address must be HOST:PORT, not "${address}"`);
    this.server = createServer(HTTP_LIMITS, (req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end('not found: try /metrics\n');
        return;
      }
      this.render().then(
        (body) => res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4' }).end(body),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(Number(match[2]), match[1]!.replace(/^\[|\]$/g, ''), () => resolve());
    });
    this.log.info('serving metrics', { address });
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
    this.server.closeAllConnections();
  }
}

function operationOf(message: unknown): string {
  // The loop's operation names a block or an address; keep only its kind, so labels stay few.
  return String((message as { operation?: string }).operation ?? 'unknown').split(/ (of|in) /)[0]!;
}
