/** ava hooks and the "nothing is left" assertion over a simulated datacenter (sim/world.ts). */
import type { ExecutionContext, TestFn } from 'ava';
import type { Datastore } from '../../shared/datastore';
import type { MesosAgent } from '../../sim/mesos-agent';
import { CniWorld } from '../../sim/world';
import { readIpamState } from './ipam-state';

export { CniWorld };

/** Nothing of any workload is left: no allocation, handle, endpoint record, veth or host route. */
export async function assertNothingLeft(t: ExecutionContext, ds: Datastore, agents: readonly MesosAgent[]): Promise<void> {
  const state = await readIpamState(ds);
  t.deepEqual([...state.allocated.keys()], [], 'no allocation left');
  t.deepEqual([...state.handles.keys()], [], 'no handle left');
  t.deepEqual(state.problems, []);
  t.deepEqual((await ds.resources.list('WorkloadEndpoint')).map((w) => w.metadata.name), [], 'no endpoint record left');
  for (const agent of agents) {
    // A container's namespace is freed by the kernel a moment after it is deleted, taking the
    // veth with it: a veth still there after a few seconds is a leak.
    const leftLinks = async () => (await agent.host.json<{ ifname: string }[]>('link', 'show')).map((l) => l.ifname).filter((n) => n !== 'lo' && n !== 'eth0');
    for (let i = 0; i < 50 && (await leftLinks()).length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 100));
    t.deepEqual(await leftLinks(), [], 'no veth left on the host');
    // Routes through a workload's veth; the node daemon's block routes (proto 80) are the host's own.
    const routes = await agent.host.json<{ dst: string; dev?: string; protocol?: string }[]>('route', 'show');
    t.deepEqual(routes.filter((r) => r.protocol !== '80').map((r) => r.dst), ['10.99.0.0/24'], 'no workload route left on the host');
    const routes6 = await agent.host.json<{ dst: string; dev: string }[]>('-6', 'route', 'show');
    t.deepEqual(routes6.filter((r) => r.dev !== 'eth0' && r.dev !== 'lo').map((r) => r.dst), [], 'no IPv6 workload route left');
  }
}

/** Registers hooks that build a world with one agent before the file's tests and remove it after. */
export function useCniWorld(test: TestFn): { readonly world: CniWorld; readonly agent: MesosAgent } {
  const state = {} as { world: CniWorld; agent: MesosAgent };
  test.before(async () => {
    state.world = await CniWorld.create();
    state.agent = await state.world.addAgent();
  });
  test.after.always(async () => {
    await state.world?.destroy();
  });
  return state;
}
