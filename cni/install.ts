/**
 * calico-install: copies the `calico` and `calico-ipam` executables into a CNI plugins directory
 * and, when asked, writes a network config for them.
 *
 *   calico-install [--plugins-dir /opt/cni/bin] [--calicoctl-dir DIR] [--conf-dir DIR --network NAME
 *                  [--etcd-endpoints URLS] [--etcd-ca-cert-file F --etcd-cert-file F --etcd-key-file F]
 *                  [--etcd-username U --etcd-password P] [--nodename NAME] [--cni-version 0.2.0]
 *                  [--daemon-socket PATH] [--log-file PATH] [--mtu-file PATH]
 *                  [--ipv6] [--no-policy] [--force]]
 */
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseCommandLine } from '../shared/command-line';
import { parseConfig } from './config';
import { CniError } from './errors';
import { installExecutable, installPluginFiles } from './plugin-files';
import { SUPPORTED_VERSIONS } from './version';

export interface InstallOptions {
  readonly network: string;
  readonly etcdEndpoints: string;
  /** etcd_* keys beyond the endpoints (TLS files, user and password), as the config names them. */
  readonly etcd: Readonly<Record<string, string | undefined>>;
  readonly nodename?: string;
  readonly cniVersion: string;
  readonly ipv6: boolean;
  readonly noPolicy: boolean;
  /** Where the node daemon listens, the log file, the daemon's MTU file: written only when given. */
  readonly daemonSocket?: string;
  readonly logFile?: string;
  readonly mtuFile?: string;
}

export function networkConfig(options: InstallOptions) {
  return {
    cniVersion: options.cniVersion,
    name: options.network,
    type: 'calico',
    etcd_endpoints: options.etcdEndpoints,
    ...Object.fromEntries(Object.entries(options.etcd).filter(([, v]) => v !== undefined)),
    ...(options.nodename ? { nodename: options.nodename } : {}),
    ...(options.noPolicy ? { no_policy: true } : {}),
    ...(options.daemonSocket !== undefined ? { daemon_socket: options.daemonSocket } : {}),
    ...(options.mtuFile !== undefined ? { mtu_file: options.mtuFile } : {}),
    ...(options.logFile !== undefined ? { log_file_path: options.logFile } : {}),
    log_level: 'info',
    ipam: { type: 'calico-ipam', assign_ipv4: 'true', assign_ipv6: options.ipv6 ? 'true' : 'false' },
  };
}

const USAGE = `usage: calico-install [--plugins-dir /opt/cni/bin] [--calicoctl-dir DIR] [--conf-dir DIR --network NAME
                      [--etcd-endpoints URLS] [--etcd-ca-cert-file F --etcd-cert-file F --etcd-key-file F]
                      [--etcd-username U --etcd-password P] [--nodename NAME] [--cni-version 0.2.0]
                      [--daemon-socket PATH] [--log-file PATH] [--mtu-file PATH]
                      [--ipv6] [--no-policy] [--force]]
  Copies the calico and calico-ipam CNI plugins into --plugins-dir (and calicoctl into
  --calicoctl-dir) and, with --conf-dir, writes the network config DIR/10-NAME.conf (an existing
  one only with --force; mode 0600 when it holds a password). The etcd settings default to
  ETCD_ENDPOINTS, ETCD_CA_CERT_FILE... of this shell, the node name to NODENAME.
  --daemon-socket, --log-file, --mtu-file: the config's daemon_socket, log_file_path, mtu_file
  (when the daemon runs with other paths than its defaults).
  --no-policy: this host enforces no policy (the plugins then never make the policy table).`;

function main(argv: string[]): void {
  const { values } = parseCommandLine('calico-install', USAGE, argv, {
      'plugins-dir': { type: 'string', default: '/opt/cni/bin' },
      'conf-dir': { type: 'string' },
      network: { type: 'string' },
      'etcd-endpoints': { type: 'string', default: process.env.ETCD_ENDPOINTS ?? 'http://127.0.0.1:2379' },
      'etcd-ca-cert-file': { type: 'string', default: process.env.ETCD_CA_CERT_FILE },
      'etcd-cert-file': { type: 'string', default: process.env.ETCD_CERT_FILE },
      'etcd-key-file': { type: 'string', default: process.env.ETCD_KEY_FILE },
      'etcd-username': { type: 'string', default: process.env.ETCD_USERNAME },
      'etcd-password': { type: 'string', default: process.env.ETCD_PASSWORD },
      'no-policy': { type: 'boolean', default: false },
      'daemon-socket': { type: 'string' },
      'log-file': { type: 'string' },
      'mtu-file': { type: 'string' },
      'calicoctl-dir': { type: 'string' },
      nodename: { type: 'string', default: process.env.NODENAME },
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
    conf = networkConfig({
      network: values.network,
      etcdEndpoints: values['etcd-endpoints']!,
      etcd: {
        etcd_ca_cert_file: values['etcd-ca-cert-file'],
        etcd_cert_file: values['etcd-cert-file'],
        etcd_key_file: values['etcd-key-file'],
        etcd_username: values['etcd-username'],
        etcd_password: values['etcd-password'],
      },
      nodename: values.nodename,
      cniVersion: values['cni-version']!,
      ipv6: values.ipv6!,
      noPolicy: values['no-policy']!,
      daemonSocket: values['daemon-socket'],
      logFile: values['log-file'],
      mtuFile: values['mtu-file'],
    });
    parseConfig(conf, undefined, {}); // the plugin's own checks
    file = join(values['conf-dir'], `10-${values.network}.conf`);
    if (existsSync(file) && !values.force) throw new Error(`${file} exists; pass --force to replace it`);
  }
  // The executables sit in dist/cni beside this one's dist/bin.
  const source = join(__dirname, '..', 'cni');
  const target = values['plugins-dir']!;
  mkdirSync(target, { recursive: true });
  for (const installed of installPluginFiles(source, target)) console.log(`installed ${installed}`);
  if (values['calicoctl-dir'] !== undefined) {
    mkdirSync(values['calicoctl-dir'], { recursive: true });
    console.log(`installed ${installExecutable(join(__dirname, 'calicoctl'), values['calicoctl-dir'])}`);
  }
  if (conf && file) {
    mkdirSync(dirname(file), { recursive: true });
    // A password is for root's eyes only (the agent reads the file as root).
    writeFileSync(file, `${JSON.stringify(conf, null, 2)}\n`);
    chmodSync(file, 'etcd_password' in conf ? 0o600 : 0o644);
    console.log(`wrote ${file}`);
  }
}

try {
  main(process.argv.slice(2));
} catch (err) {
  console.error(`calico-install: ${err instanceof CniError || err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
