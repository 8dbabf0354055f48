import { EtcdServer } from './sim/etcd';
import { Datastore, etcdSettingsFrom } from './shared/datastore';
import { loadScaleData } from './sim/scale-data';
import { PolicyCalculator } from './shared/policy/calculator';
import { POLICY_KINDS, applyRecord } from './shared/policy/records';
import { renderTable } from './shared/policy/ruleset';
const etcd = await EtcdServer.start();
const ds = await Datastore.connect({ ...etcdSettingsFrom({ etcd_endpoints: etcd.endpoint }, {}), prefix: '/m/calico', timeoutMs: 60000 });
await loadScaleData(ds, { hosts: 1000, blocks: 1600, allocations: 100_000, leaks: 0, pool: '10.64.0.0/10' });
const mb = () => { (globalThis as any).gc(); const m = process.memoryUsage(); return `heap ${(m.heapUsed / 1e6).toFixed(1)} rss ${(m.rss / 1e6).toFixed(1)}`; };
console.log('before', mb());
for (let round = 0; round < 2; round++) {
  const t0 = performance.now();
  const calc = new PolicyCalculator('host-0001');
  const revision = await ds.kv.revision();
  let read = 0, apply = 0;
  for (const kind of POLICY_KINDS) {
    const it = ds.kv.pages(ds.keys.resourcePrefix(kind), { revision });
    for (;;) {
      const r0 = performance.now();
      const { value: page, done } = await it.next();
      read += performance.now() - r0;
      if (done) break;
      const a0 = performance.now();
      for (const e of page) applyRecord(calc, ds.keys, e.key, e.value);
      apply += performance.now() - a0;
    }
  }
  const r0 = performance.now();
  const text = renderTable(calc.ruleset);
  console.log(`round ${round}: total ${(performance.now() - t0).toFixed(0)} ms read ${read.toFixed(0)} apply ${apply.toFixed(0)} render ${(performance.now() - r0).toFixed(0)} (${text.length} chars)`, mb());
  (globalThis as any).keep = calc;
}
ds.close(); await etcd.destroy(); process.exit(0);
