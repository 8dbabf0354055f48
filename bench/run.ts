/**
 * `npm run bench -- NAME`: runs one benchmark. Each measures the product against a reference run
 * in the same command and ends with one JSON line of figures.
 */
export {};

const benches: Record<string, () => Promise<Record<string, number>>> = {
  ipam: async () => (await import('./ipam')).benchIpam(),
  cni: async () => (await import('./cni')).benchCni(),
  cnm: async () => (await import('./cnm')).benchCnm(),
  burst: async () => (await import('./burst')).benchBurst(),
  scale: async () => (await import('./scale')).benchScale(),
  policy: async () => (await import('./policy')).benchPolicy(),
  netmodules: async () => (await import('./netmodules')).benchNetmodules(),
  routing: async () => (await import('./routing')).benchRouting(),
  sockets: async () => (await import('./sockets')).benchSockets(),
  fleet: async () => (await import('./fleet')).benchFleet(),
};

// Interrupted, the simulated datacenter's exit hooks still remove its namespaces and processes.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

const name = process.argv[2];
const bench = name ? benches[name] : undefined;
if (!bench) {
  console.error(`usage: npm run bench -- ${Object.keys(benches).join('|')}`);
  process.exit(2);
}
const figures = await bench();
console.log(JSON.stringify(figures));
