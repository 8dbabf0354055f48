/**
 * An invocation of one of our per-command executables (the CNI plugins, calico_mesos) and its
 * outcome, whoever runs it: node in the executable's own process, or the node daemon, to which the
 * executable's shell front (shared/front.sh) hands it.
 */

/** What an executable was started with. */
export interface Invocation {
  readonly env: NodeJS.ProcessEnv;
  readonly stdin: string;
}

/** What it prints, and its exit code. */
export interface Outcome {
  readonly stdout: string;
  readonly exitCode: number;
}

/** The executables whose commands the daemon runs. */
export type ForwardedKind = 'calico' | 'calico-ipam' | 'calico_mesos';

export const DEFAULT_DAEMON_SOCKET = '/var/run/calico/cni.sock';
