/**
 * The node daemon (one per agent): serves the CNI plugins' forwarded commands on a unix socket,
 * keeping etcd connections warm. Exits cleanly on SIGTERM/SIGINT.
 *
 *   calico-libnetwork [--cni-socket /var/run/calico/cni.sock] [--log-level info]
 */
import { parseArgs } from 'node:util';
import { DEFAULT_DAEMON_SOCKET } from '../cni/forward';
import { Logger, stderrSink, type Level } from '../shared/log';
import { CniService } from './cni-service';

const LEVELS: readonly Level[] = ['debug', 'info', 'warning', 'error'];

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'cni-socket': { type: 'string', default: process.env.CALICO_CNI_SOCKET ?? DEFAULT_DAEMON_SOCKET },
      'log-level': { type: 'string', default: process.env.CALICO_LOG_LEVEL ?? 'info' },
    },
  });
  const level = values['log-level'] as Level;
  if (!LEVELS.includes(level)) throw new Error(`--log-level must be one of ${LEVELS.join(', ')}`);
  const log = new Logger(level, [stderrSink], { daemon: 'calico-libnetwork' });
  const cni = new CniService(values['cni-socket']!, log);
  await cni.start();

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info('stopping', { signal });
    await cni.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`calico-libnetwork: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
