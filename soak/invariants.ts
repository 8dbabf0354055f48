/**
 * The soak's checker. Held at every moment: no address is held by two live workloads, and none
 * of a live workload's addresses is free in IPAM; netB never reaches netA. Held once things had
 * time to settle (a workload live for SETTLE_MS, and no fault for as long): every live workload
 * has its endpoint record, its route on its own host and on every other, its policy programmed,
 * and netA reaches netA. At the end, after every workload is gone and the collectors ran: nothing
 * is left over.
 */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { readIpamState } from '../test/helpers/ipam-state';
import { NFT } from '../shared/dataplane/nftables';
import { tunnelHandle } from '../shared/endpoints/identity';
import { cidrContains, formatAddress, parseAddress, parseCidr } from '../shared/net';
import type { Netns } from '../sim/netns';
import type { Random } from '../sim/random';
import type { Workload, Workloads } from './workload';
import type { SoakAgent, SoakWorld } from './world';

const run = promisify(execFile);
const SETTLE_MS = 10_000;

export type ViolationKind = 'duplicate' | 'lost-allocation' | 'ipam-inconsistent' | 'no-endpoint' | 'no-route' | 'no-policy' | 'isolation' | 'unreachable' | 'leak' | 'orphan';

export interface Violation {
  readonly kind: ViolationKind;
  readonly detail: string;
}

interface HostView {
  readonly routes: { dst: string; dev?: string; type?: string }[];
  readonly programmed: Set<string>;
}

export class Checker {
  constructor(
    private readonly world: SoakWorld,
    private readonly workloads: Workloads,
    private readonly random: Random,
    /** When the last fault ended (ms, the soak's clock); Infinity while one is on. */
    private readonly quietSince: () => number,
    private readonly now: () => number,
    /** Malformed records the soak wrote itself, while they stand. */
    private readonly planted: ReadonlySet<string>,
  ) {}

  /**
   * The invariants now. `recoveringFrom`: when the last fault ended, if the soak waits to see the
   * cluster recover from it; `recovered` then says whether every workload live since before then
   * has its endpoint, routes and policy again (what a settled workload must have, without the wait).
   */
  async check(recoveringFrom?: number): Promise<{ violations: Violation[]; recovered: boolean }> {
    const violations: Violation[] = [];
    const live = this.workloads.live();
    const state = await readIpamState(this.world.ds, (key) => this.planted.has(key));
    const holders = new Map<string, Workload>();
    for (const workload of live) {
      for (const ip of workload.ips) {
        const other = holders.get(ip);
        if (other) violations.push({ kind: 'duplicate', detail: `${ip} is held by ${other.kind} ${other.id} and ${workload.kind} ${workload.id}` });
        holders.set(ip, workload);
        // Read after the registry: an address it holds was allocated before it became live.
        if (!state.allocated.has(ip) && workload.state === 'live') violations.push({ kind: 'lost-allocation', detail: `${ip} of live ${workload.kind} ${workload.id} is free in IPAM` });
      }
    }
    for (const problem of state.problems) {
      violations.push({ kind: problem.endsWith('allocated twice') ? 'duplicate' : 'ipam-inconsistent', detail: problem });
    }
    const settled = new Set(live.filter((w) => w.state === 'live' && this.now() - Math.max(w.liveSince, this.quietSince()) >= SETTLE_MS));
    const recovering = recoveringFrom === undefined ? [] : live.filter((w) => w.liveSince <= recoveringFrom && !settled.has(w));
    const found = settled.size + recovering.length > 0 ? await this.checkSettled([...settled, ...recovering]) : [];
    violations.push(...found.filter((v) => settled.has(v.workload)).map((v) => v.violation));
    violations.push(...(await this.sampleIsolation(live, [...settled])));
    return { violations, recovered: recoveringFrom !== undefined && found.length === 0 };
  }

  /** Endpoint, routes and policy of workloads that had time to get them. */
  private async checkSettled(settled: readonly Workload[]): Promise<{ workload: Workload; violation: Violation }[]> {
    const violations: { workload: Workload; violation: Violation }[] = [];
    // The soak's own garbage is skipped; any other malformed endpoint fails the check.
    const endpoints = await this.world.ds.resources.list('WorkloadEndpoint', undefined, {
      onMalformed: (err) => {
        if (!this.planted.has(err.key)) throw err;
      },
    });
    const interfaceOf = new Map<string, string>();
    for (const endpoint of endpoints) for (const net of endpoint.spec.ipNetworks ?? []) interfaceOf.set(net.split('/')[0]!, endpoint.spec.interfaceName);
    const views = new Map<SoakAgent, HostView>();
    for (const agent of this.world.agents) views.set(agent, await hostView(agent));
    for (const workload of settled) {
      if (workload.state !== 'live') continue;
      for (const ip of workload.ips) {
        const what = `${workload.kind} ${workload.id} (${ip} on ${workload.agent.name})`;
        const push = (violation: Violation) => violations.push({ workload, violation });
        const iface = interfaceOf.get(ip);
        if (!iface) {
          push({ kind: 'no-endpoint', detail: `${what} has no endpoint record` });
          continue;
        }
        const own = views.get(workload.agent)!;
        if (!own.routes.some((r) => r.dst === ip && r.dev === iface)) push({ kind: 'no-route', detail: `${what}: its host has no route to it through ${iface}` });
        if (!own.programmed.has(iface)) push({ kind: 'no-policy', detail: `${what}: ${iface} is not in the policy table` });
        for (const [agent, view] of views) {
          if (agent === workload.agent) continue;
          if (!routedBy(view, ip)) push({ kind: 'no-route', detail: `${what}: ${agent.name} has no route to it` });
        }
      }
    }
    return violations;
  }

  /** One netB workload tries a netA one (never answered); one netA workload tries another (answered, once settled). */
  private async sampleIsolation(live: readonly Workload[], settled: readonly Workload[]): Promise<Violation[]> {
    const violations: Violation[] = [];
    const of = (list: readonly Workload[], network: string) => list.filter((w) => w.state === 'live' && w.network === network);
    const [fromB, toA] = [of(live, 'netB'), of(live, 'netA')];
    if (fromB.length > 0 && toA.length > 0) {
      const [b, a] = [this.random.pick(fromB), this.random.pick(toA)];
      if ((await pingFrom(b, a.ips[0]!)) && b.state === 'live' && a.state === 'live') violations.push({ kind: 'isolation', detail: `netB ${b.kind} ${b.id} reached netA ${a.kind} ${a.id} at ${a.ips[0]}` });
    }
    const settledA = of(settled, 'netA');
    if (settledA.length >= 2) {
      const a = this.random.pick(settledA);
      const other = this.random.pick(settledA.filter((w) => w !== a));
      let reached = false;
      for (let i = 0; i < 3 && !reached; i++) reached = await pingFrom(a, other.ips[0]!);
      if (!reached && a.state === 'live' && other.state === 'live' && this.now() - this.quietSince() >= SETTLE_MS) {
        violations.push({ kind: 'unreachable', detail: `netA ${a.kind} ${a.id} on ${a.agent.name} cannot reach netA ${other.kind} ${other.id} at ${other.ips[0]} on ${other.agent.name} (${await this.diagnose(a, other)})` });
      }
    }
    return violations;
  }

  /** What the hosts say of a path that failed, and whether it works a few seconds later. */
  private async diagnose(from: Workload, to: Workload): Promise<string> {
    const [source, target] = [from.ips[0]!, to.ips[0]!];
    const routeGet = (host: Netns, ip: string) => host.ip('route', 'get', ip).then((out) => out.split('\n')[0]!.trim(), (err: Error) => `no route: ${err.message.slice(0, 80)}`);
    const records = (await this.world.ds.resources.list('WorkloadEndpoint', undefined, { skipMalformed: true }))
      .filter((e) => (e.spec.ipNetworks ?? []).some((n) => [`${source}/32`, `${target}/32`].includes(n)))
      .map((e) => `${e.metadata.name} ${e.spec.node} ${e.spec.interfaceName} ${(e.spec.ipNetworks ?? []).join(',')} [${(e.spec.profiles ?? []).join(',')}]`);
    const programmed = await hostView(to.agent).then((v) => [...v.programmed].join(','), (err: Error) => err.message);
    // On the source's host, its own sets (anti-spoofing among them); on the target's, the policy's.
    const holding = async (agent: SoakAgent) => setsHolding(agent, source).then((names) => names.join(',') || 'none', (err: Error) => err.message);
    const [atSource, atTarget] = [await holding(from.agent), await holding(to.agent)];
    // The target's own sets: anti-spoofing lets its answers out.
    const targetHeld = await setsHolding(to.agent, target).then((names) => names.join(',') || 'none', (err: Error) => err.message);
    // Between racks, the path runs through the rack routers (BIRD's routes are theirs too).
    const routers = await Promise.all(this.world.world.fabric.racks.map(async (rack, i) => {
      const kernel = await rack.router.ip('route', 'show').then((out) => out.trim().split('\n').join(', '), (err: Error) => err.message);
      return `router ${i + 1}: ${await routeGet(rack.router, target)}; ${await routeGet(rack.router, source)}; its routes: ${kernel}`;
    }));
    const reflector = await this.world.reflector?.describe().catch((err: Error) => err.message);
    await sleep(3000);
    const later = await pingFrom(from, target);
    return [
      `${from.agent.name}: ${await routeGet(from.agent.host, target)}`,
      `${to.agent.name}: ${await routeGet(to.agent.host, source)}`,
      ...routers,
      ...(reflector ? [`reflector: ${reflector}`] : []),
      `records: ${records.join('; ') || 'none'}`,
      `${to.agent.name}'s policy map: ${programmed}`,
      `sets holding ${source}: ${from.agent.name}'s ${atSource}; ${to.agent.name}'s ${atTarget}`,
      `sets holding ${target}: ${to.agent.name}'s ${targetHeld}`,
      `3 s later: ${later ? 'reached' : 'still unreachable'}`,
    ].join(' | ');
  }

  /** What must be gone once every workload is: addresses, records, links, policy entries; at most one spare block per host. */
  async leftovers(): Promise<Violation[]> {
    const violations: Violation[] = [];
    const state = await readIpamState(this.world.ds);
    // Each host's tunnel address is the host's own, not a workload's.
    const hostsOwn = new Set(this.world.agents.flatMap((a) => [tunnelHandle('vxlan', a.name), tunnelHandle('ipip', a.name)]));
    for (const [ip, handle] of state.allocated) if (!handle || !hostsOwn.has(handle)) violations.push({ kind: 'leak', detail: `${ip} is still allocated (handle ${handle})` });
    for (const problem of state.problems) violations.push({ kind: 'ipam-inconsistent', detail: problem });
    for (const endpoint of await this.world.ds.resources.list('WorkloadEndpoint')) violations.push({ kind: 'orphan', detail: `endpoint record ${endpoint.metadata.namespace}/${endpoint.metadata.name} is left` });
    const emptyByHost = new Map<string, number>();
    for (const block of state.blocks) if (block.inUse === 0 && block.affinity) emptyByHost.set(block.affinity, (emptyByHost.get(block.affinity) ?? 0) + 1);
    for (const [host, count] of emptyByHost) if (count > 1) violations.push({ kind: 'leak', detail: `${host} keeps ${count} empty blocks` });
    for (const agent of this.world.agents) {
      const links = (await agent.host.json<{ ifname: string }[]>('link', 'show')).map((l) => l.ifname).filter((n) => n.startsWith('cali'));
      for (const link of links) violations.push({ kind: 'orphan', detail: `${agent.name} keeps link ${link}` });
      for (const iface of (await hostView(agent)).programmed) violations.push({ kind: 'orphan', detail: `${agent.name}'s policy table keeps ${iface}` });
    }
    const check = await run(resolve('dist/bin/calicoctl'), ['ipam', 'check', '--grace-period', '0'], {
      env: { PATH: process.env.PATH, ETCD_ENDPOINTS: this.world.world.fabric.members.map((m) => m.endpoint).join(','), ETCD_PREFIX: this.world.prefix },
    }).then(() => undefined, (err: { stdout?: string }) => err.stdout ?? String(err));
    if (check !== undefined) violations.push({ kind: 'leak', detail: `calicoctl ipam check: ${check.trim()}` });
    return violations;
  }
}

async function hostView(agent: SoakAgent): Promise<HostView> {
  const routes = await agent.host.json<HostView['routes']>('route', 'show');
  const programmed = new Set<string>();
  try {
    // Debian's nft by its path: under npm, PATH finds node-file-trace's `nft` first.
    const { stdout } = await run('nsenter', [`--net=${agent.host.path}`, NFT, '-j', 'list', 'map', 'inet', 'calico', 'ingress']);
    const map = (JSON.parse(stdout) as { nftables: { map?: { elem?: [unknown, unknown][] } }[] }).nftables.find((e) => e.map)?.map;
    for (const [key] of map?.elem ?? []) if (typeof key === 'string') programmed.add(key);
  } catch (err) {
    // No table (yet): nothing is programmed.
    if (!/No such file or directory/.test(String((err as { stderr?: string }).stderr))) throw new Error(`cannot list the policy map of ${agent.name}: ${String((err as { stderr?: string }).stderr ?? err)}`);
  }
  return { routes, programmed };
}

/** The names of the policy table's sets on `agent` that hold `ip` (as an element of its own or within one). */
async function setsHolding(agent: SoakAgent, ip: string): Promise<string[]> {
  const { stdout } = await run('nsenter', [`--net=${agent.host.path}`, NFT, '-j', 'list', 'table', 'inet', 'calico'], { maxBuffer: 64 << 20 });
  const address = parseAddress(ip);
  const sets = (JSON.parse(stdout) as { nftables: { set?: { name: string; elem?: unknown[] } }[] }).nftables.flatMap((e) => (e.set ? [e.set] : []));
  return sets.filter((set) => (set.elem ?? []).some((elem) => elementHolds(elem, address))).map((set) => set.name);
}

/** An element of a set as nft's JSON gives it: an address, a prefix or a concatenation holding one (a range, never in our sets, holds nothing here). */
function elementHolds(elem: unknown, address: ReturnType<typeof parseAddress>): boolean {
  if (typeof elem === 'string') return elem === formatAddress(address);
  const e = elem as { prefix?: { addr: string; len: number }; elem?: unknown; concat?: unknown[] };
  if (e.elem !== undefined) return elementHolds(e.elem, address);
  if (e.concat) return e.concat.some((part) => elementHolds(part, address));
  if (e.prefix) return cidrContains(parseCidr(`${e.prefix.addr}/${e.prefix.len}`), address);
  return false;
}

/** A route that leads somewhere (not unreachable or blackhole) covers `ip`. */
function routedBy(view: HostView, ip: string): boolean {
  const address = parseAddress(ip);
  return view.routes.some((r) => r.type !== 'unreachable' && r.type !== 'blackhole' && r.dst !== 'default' && cidrContains(parseCidr(r.dst.includes('/') ? r.dst : `${r.dst}/32`), address));
}

async function pingFrom(workload: Workload, ip: string): Promise<boolean> {
  try {
    switch (workload.kind) {
      case 'cni':
        return await workload.agent.mesos.container(workload.id).ping(ip);
      case 'netmodules':
        return await workload.agent.netmodules.container(workload.id).ping(ip);
      case 'docker':
        return await workload.agent.docker!.docker('exec', workload.id, 'ping', '-c', '1', '-W', '1', ip).then(() => true, () => false);
    }
  } catch {
    // Gone meanwhile.
    return false;
  }
}
