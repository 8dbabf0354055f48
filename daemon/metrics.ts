/**
 * Prometheus metrics of the node daemon, with prom-client (the well-kept exposition library), on a
 * local address: requests by driver, call and outcome with their durations; addresses in use per
 * pool and host; CAS conflicts and exhausted retries; etcd errors; the CNI ADD's phases; the
 * policy table (rules programmed, how long programming took, failures); node's own process metrics
 * (CPU, memory, the event loop's delay). No per-container labels:
 * cardinality stays bounded by calls, pools and hosts.
 */
import { subscribe } from 'node:diagnostics_channel';
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { commandPhases, casConflicts, casExhausted, etcdErrors } from '../shared/diagnostics';
import type { Ipam } from '../shared/ipam/ipam';
import { poolHolds } from '../shared/ipam/pool';
import { formatCidr } from '../shared/net';
import type { Logger } from '../shared/log';
import { HTTP_LIMITS } from '../shared/request-limits';
import type { PolicySyncReport } from './policy-keeper';

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** How long a computed IPAM usage is served before it is read again from etcd. */
const USAGE_CACHE_MS = 5000;

export class Metrics {
  private readonly registry = new Registry();
  private readonly requests = new Counter({ name: 'calico_requests_total', help: 'Requests served, by driver (cni, network, ipam), call and outcome.', labelNames: ['driver', 'call', 'outcome'], registers: [this.registry] });
  private readonly durations = new Histogram({ name: 'calico_request_duration_seconds', help: 'Time to serve a request, by driver and call.', labelNames: ['driver', 'call'], buckets: BUCKETS, registers: [this.registry] });
  private readonly policyRules = new Gauge({ name: 'calico_policy_rules', help: 'Rules in the policy table (inet calico) as last programmed.', registers: [this.registry] });
  private readonly policySync = new Gauge({ name: 'calico_policy_last_sync_seconds', help: 'How long the last programming of the policy table took, by kind (full, changes).', labelNames: ['kind'], registers: [this.registry] });
  private readonly policyFailures = new Counter({ name: 'calico_policy_sync_failures_total', help: 'Programmings of the policy table that failed, by kind (full, changes).', labelNames: ['kind'], registers: [this.registry] });
  private server: Server | undefined;
  private usage: { at: number; values: Map<string, number> } | undefined;

  constructor(
    private readonly ipam: () => Promise<Ipam>,
    private readonly node: string,
    private readonly log: Logger,
  ) {
    const registers = [this.registry];
    const conflicts = new Counter({ name: 'calico_ipam_cas_conflicts_total', help: 'IPAM compare-and-swap rounds lost to a concurrent writer and retried.', labelNames: ['operation'], registers });
    const exhausted = new Counter({ name: 'calico_ipam_cas_retries_exhausted_total', help: 'IPAM operations that gave up after too many conflicts.', labelNames: ['operation'], registers });
    const etcd = new Counter({ name: 'calico_etcd_errors_total', help: 'etcd calls that failed, by kind (unavailable, request).', labelNames: ['kind'], registers });
    const phases = new Histogram({ name: 'calico_cni_phase_seconds', help: 'Time a CNI command served by the daemon spends in each phase (ADD: lookup, ipam, then dataplane and record at once, wiring being the two together; DEL: interfaces, and datastore (the addresses released with the endpoint record), at once).', labelNames: ['command', 'phase'], buckets: BUCKETS, registers });
    const metrics = this;
    new Gauge({
      name: 'calico_ipam_addresses_in_use',
      help: "Addresses allocated in this host's blocks, by pool.",
      labelNames: ['pool', 'host'],
      registers,
      async collect() {
        this.reset();
        for (const [pool, value] of await metrics.ipamUsage()) this.set({ pool, host: metrics.node }, value);
      },
    });
    subscribe(casConflicts.name, (message) => conflicts.inc({ operation: operationOf(message) }));
    subscribe(casExhausted.name, (message) => exhausted.inc({ operation: operationOf(message) }));
    subscribe(etcdErrors.name, (message) => etcd.inc({ kind: String((message as { kind?: string }).kind ?? 'unknown') }));
    subscribe(commandPhases.name, (message) => {
      const { command, phases: times } = message as { command: string; phases: Record<string, number> };
      for (const [phase, seconds] of Object.entries(times)) phases.observe({ command, phase }, seconds);
    });
  }

  /** Records one served request. */
  request(driver: string, call: string, ok: boolean, seconds: number): void {
    this.requests.inc({ driver, call, outcome: ok ? 'ok' : 'error' });
    this.durations.observe({ driver, call }, seconds);
  }

  /** Records one programming of the policy table. */
  policy(report: PolicySyncReport): void {
    this.policyRules.set(report.rules);
    if (report.ok) this.policySync.set({ kind: report.kind }, report.seconds);
    else this.policyFailures.inc({ kind: report.kind });
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  /**
   * Addresses in use in this host's blocks, per pool, read from etcd at most every few seconds.
   * Only this host's keys: every daemon reports its own host, so a scrape costs the same however
   * large the cluster grows.
   */
  private async ipamUsage(): Promise<Map<string, number>> {
    if (this.usage && Date.now() - this.usage.at < USAGE_CACHE_MS) return this.usage.values;
    const values = new Map<string, number>();
    try {
      const ipam = await this.ipam();
      const pools = await ipam.pools();
      for (const block of await ipam.hostBlockUsage(this.node)) {
        const pool = pools.find((p) => poolHolds(p, block.cidr));
        const name = pool ? formatCidr(pool.cidr) : 'none';
        values.set(name, (values.get(name) ?? 0) + block.inUse);
      }
    } catch (err) {
      this.log.debug('cannot read IPAM usage for metrics', { error: (err as Error).message });
      return values;
    }
    this.usage = { at: Date.now(), values };
    return values;
  }

  async listen(address: string): Promise<void> {
    const match = /^(.*):(\d+)$/.exec(address);
    if (!match) throw new Error(`--metrics-address must be HOST:PORT, not "${address}"`);
    // The process's own (CPU, memory, the event loop's delay since the last scrape): watched only
    // when someone may read them.
    collectDefaultMetrics({ register: this.registry });
    this.server = createServer(HTTP_LIMITS, (req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end('not found: try /metrics\n');
        return;
      }
      this.render().then(
        (body) => res.writeHead(200, { 'Content-Type': this.registry.contentType }).end(body),
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
