/** ava hooks for a test file about the Docker drivers: one agent with dockerd and the node daemon. */
import type { TestFn } from 'ava';
import type { Datastore } from '../../shared/datastore';
import { DockerAgent } from '../../sim/docker-agent';
import { CniWorld } from '../../sim/world';

export interface DockerSetup {
  readonly world: CniWorld;
  readonly agent: DockerAgent;
  readonly prefix: string;
  readonly ds: Datastore;
  /** The drivers' names, unique to this run: Docker finds plugins by name on the whole machine. */
  readonly driver: string;
  readonly ipamDriver: string;
  readonly node: string;
  /** (Re)starts the agent's daemon serving both drivers, local scope, with these arguments besides. */
  startDaemon(extraArgs?: readonly string[]): Promise<void>;
}

export interface DockerSetupOptions {
  /** The agent's host name (the fabric's namespace), the scenario's name and its pools, the node's name. */
  readonly host: string;
  readonly scenario: string;
  readonly pools: { readonly v4: string; readonly v6: string };
  readonly node: string;
  /** The daemon's log lines shown after the file's tests. */
  readonly shownLog: RegExp;
  /** Calico networks (both drivers) created once the daemon serves. */
  readonly networks?: readonly string[];
}

/** Registers hooks that build the agent and start its daemon before the file's tests, and remove all after. */
export function useDockerAgent(test: TestFn, options: DockerSetupOptions): DockerSetup {
  const driver = `calico-${Math.random().toString(36).slice(2, 7)}`;
  const state = {
    driver,
    ipamDriver: `${driver}-ipam`,
    node: options.node,
    startDaemon: (extraArgs: readonly string[] = []) =>
      state.agent.startDaemon({ etcdEndpoint: state.world.fabric.etcd.hostEndpoint, prefix: state.prefix, node: options.node, driver, ipamDriver: state.ipamDriver, extraArgs: ['--scope', 'local', ...extraArgs] }),
  } as { -readonly [K in keyof DockerSetup]: DockerSetup[K] };
  test.before(async () => {
    state.world = await CniWorld.create();
    state.agent = await DockerAgent.start(await state.world.fabric.addHost(options.host));
    ({ prefix: state.prefix, ds: state.ds } = await state.world.scenario(options.scenario, options.pools));
    await state.startDaemon();
    for (const network of options.networks ?? []) await state.agent.docker('network', 'create', '-d', driver, '--ipam-driver', state.ipamDriver, network);
  });
  test.after.always(async (t) => {
    if (state.agent) t.log(state.agent.daemonLog.split('\n').filter((l) => options.shownLog.test(l)).slice(-30).join('\n'));
    await state.agent?.destroy();
    await state.world?.destroy();
  });
  return state;
}
