/**
 * A cluster's worth of records (100,000 allocations in 1,600 blocks on 1,000 hosts, 50 planted
 * leaks), loaded straight into a local etcd, then, as an operator runs them:
 * - check_s, check_peak_mb: `calicoctl ipam check`, its time and its peak memory; check_leaks
 *   the leaks it reports (exactly the planted ones);
 * - show_s: `calicoctl ipam show`; node_status_s: `calicoctl node status`;
 * - gc_pass_s: one pass of the node daemon's garbage collector, on a host holding a leak.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GarbageCollector } from '../daemon/garbage-collector';
import { Datastore, etcdSettingsFrom } from '../shared/datastore';
import { Ipam } from '../shared/ipam/ipam';
import { silentLogger } from '../shared/log';
import { runCalicoctl } from '../sim/calicoctl';
import { EtcdServer } from '../sim/etcd';
import { loadScaleData } from '../sim/scale-data';
import { nowMs, round } from './stats';

const SPEC = { hosts: 1000, blocks: 1600, allocations: 100_000, leaks: 50, pool: '10.64.0.0/10' };

export async function benchScale(): Promise<Record<string, number>> {
  const etcd = await EtcdServer.start();
  const dir = mkdtempSync(join(tmpdir(), 'bench-scale-'));
  const prefix = '/bench-scale/calico';
  const ds = await Datastore.connect({ ...etcdSettingsFrom({ etcd_endpoints: etcd.endpoint }, {}), prefix, timeoutMs: 60_000 });
  try {
    let start = nowMs();
    const data = await loadScaleData(ds, SPEC);
    console.log(`loaded ${data.keys} keys in ${round((nowMs() - start) / 1000)} s`);
    const env = { ETCD_ENDPOINTS: etcd.endpoint, ETCD_PREFIX: prefix };
    const report = join(dir, 'report.json');
    const check = await runCalicoctl(['ipam', 'check', '-o', report], env);
    const leaks = JSON.parse(readFileSync(report, 'utf8')).allocatedWithoutEndpoint.length as number;
    if (check.code !== 1 || leaks !== SPEC.leaks) throw new Error(`ipam check found ${leaks} leaks (code ${check.code}): ${check.stdout.slice(0, 500)} ${check.stderr}`);
    const show = await runCalicoctl(['ipam', 'show'], env);
    const status = await runCalicoctl(['node', 'status'], env);
    for (const run of [show, status]) if (run.code !== 0) throw new Error(run.stderr);
    console.log(`ipam check ${round(check.seconds)} s, ${round(check.peakMb)} MiB; ipam show ${round(show.seconds)} s; node status ${round(status.seconds)} s`);

    const host = data.leaks[0]!.host;
    const ipam = new Ipam(ds);
    const gc = new GarbageCollector(async () => ({ ds, ipam }), undefined, { node: host, intervalMs: 0, graceMs: 3_600_000 }, silentLogger);
    start = nowMs();
    const cleaned = await gc.collect();
    const gcS = (nowMs() - start) / 1000;
    if (!cleaned.includes(`address ${data.leaks[0]!.address}`)) throw new Error(`the GC pass did not collect the leak of ${host}: ${cleaned.join(', ')}`);
    console.log(`GC pass on ${host}: ${round(gcS, 3)} s`);
    return {
      check_s: round(check.seconds),
      check_peak_mb: round(check.peakMb),
      check_leaks: leaks,
      show_s: round(show.seconds),
      node_status_s: round(status.seconds),
      gc_pass_s: round(gcS, 3),
    };
  } finally {
    ds.close();
    await etcd.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
