/**
 * calico-install: copies the `calico` and `calico-ipam` executables into a CNI plugins directory
 * and, when asked, writes a network config for them.
 *
 *   calico-install [--plugins-dir /opt/cni/bin] [--conf-dir DIR --network NAME
 *                  [--etcd-endpoints URLS] [--nodename NAME] [--cni-version 0.2.0] [--ipv6] [--force]]
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseCommandLine } from '../shared/command-line';
import { parseConfig } from './config';
import { CniError } from './errors';
import { installPluginFiles } from './plugin-files';
import { SUPPORTED_VERSIONS } from './version';

export function networkConfig(options: { network: string; etcdEndpoints: string; nodename?: string; cniVersion: string; ipv6: boolean }) {
  return {
    cniVersion: options.cniVersion,
    name: options.network,
    type: 'calico',
    etcd_endpoints: options.etcdEndpoints,
    ...(options.nodename ? { nodename: options.nodename } : {}),
    log_level: 'info',
    ipam: { type: 'calico-ipam', assign_ipv4: 'true', assign_ipv6: options.ipv6 ? 'true' : 'false' },
  };
}

const USAGE = `usage: calico-install [--plugins-dir /opt/cni/bin] [--conf-dir DIR --network NAME
                      [--etcd-endpoints URLS] [--nodename NAME] [--cni-version 0.2.0] [--ipv6] [--force]]
  Copies the calico and calico-ipam CNI plugins into --plugins-dir and, with --conf-dir, writes
  the network config DIR/10-NAME.conf (an existing one only with --force).`;

function main(argv: string[]): void {
  const { values } = parseCommandLine('calico-install', USAGE, argv, {
      'plugins-dir': { type: 'string', default: '/opt/cni/bin' },
      'conf-dir': { type: 'string' },
      network: { type: 'string' },
      'etcd-endpoints': { type: 'string', default: process.env.ETCD_ENDPOINTS ?? 'http://127.0.0.1:2379' },
      nodename: { type: 'string' },
      'cni-version': { type: 'string', default: '0.2.0' },
      ipv6: { type: 'boolean', default: false },
      force: { type: 'boolean', default: false },
  });
  // Everything is checked before anything is written.
  let conf: ReturnType<typeof networkConfig> | undefined;
  let file: string | undefined;
  if (values['conf-dir'] !== undefined) {
    if (!values.network) throw new Error('--conf-dir needs --network NAME');
    if (!(SUPPORTED_VERSIONS as readonly string[]).includes(values['cni-version']!)) throw new Error(`--cni-version must be one of ${SUPPORTED_VERSIONS.join(', ')}`);
    conf = networkConfig({ network: values.network, etcdEndpoints: values['etcd-endpoints']!, nodename: values.nodename, cniVersion: values['cni-version']!, ipv6: values.ipv6! });
    parseConfig(conf, undefined, {}); // the plugin's own checks
    file = join(values['conf-dir'], `10-${values.network}.conf`);
    if (existsSync(file) && !values.force) throw new Error(`${file} exists; pass --force to replace it`);
  }
  // The executables sit in dist/cni beside this one's dist/bin.
  const source = join(__dirname, '..', 'cni');
  const target = values['plugins-dir']!;
  mkdirSync(target, { recursive: true });
  for (const installed of installPluginFiles(source, target)) console.log(`installed ${installed}`);
  if (conf && file) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, `${JSON.stringify(conf, null, 2)}\n`);
    console.log(`wrote ${file}`);
  }
}

try {
  main(process.argv.slice(2));
} catch (err) {
  console.error(`calico-install: ${err instanceof CniError || err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
