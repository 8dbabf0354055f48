/**
 * calicoctl's commands (the executable is ctl/calicoctl.ts): the operator's tool for the datastore the plugins and the daemon share.
 *
 *   calicoctl create|apply|replace|delete -f FILE|-       calicoctl delete KIND NAME
 *   calicoctl get KIND [NAME] [-o table|wide|yaml|json] [-n NAMESPACE]
 *   calicoctl pool add CIDR [--name N] [--block-size N] [--disabled] [--nat-outgoing]   calicoctl pool rm NAME|CIDR
 *   calicoctl ipam show [--show-blocks] [--ip ADDR]
 *   calicoctl ipam configure --strict-affinity=true|false [--max-blocks-per-host=N]
 *   calicoctl ipam check [-o REPORT.json] [--grace-period SECONDS]
 *   calicoctl ipam release --from-report REPORT.json
 *   calicoctl datastore init [--default-pool CIDR]         calicoctl node status
 * Global: --config FILE (/etc/calico/calicoctl.cfg), --etcd-endpoints, --etcd-ca-cert-file,
 *   --etcd-cert-file, --etcd-key-file, --etcd-username, --etcd-password, --etcd-prefix; else
 *   ETCD_ENDPOINTS and friends.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Datastore, DatastoreUnavailableError } from '../shared/datastore';
import { messageOf } from '../shared/errors';
import { Ipam } from '../shared/ipam/ipam';
import { addPool, datastoreInit, nodeStatus, removePool } from './cluster-commands';
import { kindOf, parseDocuments } from './documents';
import { CtlError, CtlUsageError } from './errors';
import { describeReport, ipamCheck, ipamConfigure, ipamReleaseFromReport, ipamShow, writeReport } from './ipam-commands';
import { formatOf, printResources } from './output';
import { ResourceClient } from './resource-client';
import { ctlSettings, endpointsSource, unreachableDatastore } from './settings';

const OPTIONS = {
  config: { type: 'string' },
  'etcd-endpoints': { type: 'string' },
  'etcd-ca-cert-file': { type: 'string' },
  'etcd-cert-file': { type: 'string' },
  'etcd-key-file': { type: 'string' },
  'etcd-username': { type: 'string' },
  'etcd-password': { type: 'string' },
  'etcd-prefix': { type: 'string' },
  filename: { type: 'string', short: 'f' },
  output: { type: 'string', short: 'o' },
  namespace: { type: 'string', short: 'n' },
  name: { type: 'string' },
  'block-size': { type: 'string' },
  disabled: { type: 'boolean' },
  'nat-outgoing': { type: 'boolean' },
  'show-blocks': { type: 'boolean' },
  ip: { type: 'string' },
  'strict-affinity': { type: 'string' },
  'max-blocks-per-host': { type: 'string' },
  'grace-period': { type: 'string' },
  'from-report': { type: 'string' },
  'default-pool': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const COMMANDS = new Set(['create', 'apply', 'replace', 'delete', 'get', 'pool', 'ipam', 'datastore', 'node']);

const USAGE = `usage:
  calicoctl create|apply|replace|delete -f FILE|-
  calicoctl delete KIND NAME
  calicoctl get KIND [NAME] [-o table|wide|yaml|json] [-n NAMESPACE]
  calicoctl pool add CIDR [--name NAME] [--block-size N] [--disabled] [--nat-outgoing]
  calicoctl pool rm NAME|CIDR
  calicoctl ipam show [--show-blocks] [--ip ADDR]
  calicoctl ipam configure --strict-affinity=true|false [--max-blocks-per-host=N]
  calicoctl ipam check [-o REPORT.json] [--grace-period SECONDS]
  calicoctl ipam release --from-report REPORT.json
  calicoctl datastore init [--default-pool CIDR]
  calicoctl node status
global options: --config FILE, --etcd-endpoints URLS, --etcd-ca-cert-file, --etcd-cert-file, --etcd-key-file, --etcd-username, --etcd-password, --etcd-prefix`;

async function readInput(file: string): Promise<{ text: string; source: string }> {
  try {
    if (file !== '-') return { text: readFileSync(file, 'utf8'), source: file };
    // Streamed: a synchronous read of a pipe can return before the writer is done.
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return { text: Buffer.concat(chunks).toString('utf8'), source: 'stdin' };
  } catch (err) {
    throw new CtlError(`cannot read ${file}: ${messageOf(err)}`);
  }
}

function parse(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true });
  } catch (err) {
    throw new CtlUsageError(`${messageOf(err)}\n${USAGE}`);
  }
}

type ParsedValues = ReturnType<typeof parse>['values'];

/** Runs one command; returns what to print on stdout and the exit code. */
export async function run(argv: string[], env: NodeJS.ProcessEnv): Promise<{ out: string; code: number }> {
  const parsed = parse(argv);
  const { values, positionals } = parsed;
  const [command, sub, third] = positionals;
  if (values.help) return { out: USAGE, code: 0 };
  if (!command) throw new CtlUsageError(`a command is needed\n${USAGE}`);
  if (!COMMANDS.has(command)) throw new CtlUsageError(`unknown command "${command}"\n${USAGE}`);
  const flags = values as Record<string, string | undefined>;
  const ds = await Datastore.connect(ctlSettings(flags, env));
  try {
    return await runCommand(ds, command, sub, third, values, env);
  } catch (err) {
    if (err instanceof DatastoreUnavailableError) throw new CtlError(unreachableDatastore(err.message, endpointsSource(flags, env)));
    throw err;
  } finally {
    ds.close();
  }
}

async function runCommand(ds: Datastore, command: string, sub: string | undefined, third: string | undefined, values: ParsedValues, env: NodeJS.ProcessEnv): Promise<{ out: string; code: number }> {
  const ipam = new Ipam(ds);
  const resources = new ResourceClient(ds, ipam);
  switch (command) {
    case 'create':
    case 'apply':
    case 'replace':
    case 'delete': {
      if (command === 'delete' && !values.filename) {
        if (!sub || !third) throw new CtlError('delete needs -f FILE, or KIND NAME');
        await resources.delete(kindOf(sub), third, values.namespace);
        return { out: `Successfully deleted 1 '${kindOf(sub)}' resource(s)`, code: 0 };
      }
      if (!values.filename) throw new CtlError(`${command} needs -f FILE (or - for stdin)`);
      const { text, source } = await readInput(values.filename);
      const documents = parseDocuments(text, source);
      for (const doc of documents) {
        if (command === 'delete') await resources.delete(doc.kind, doc.metadata.name, doc.metadata.namespace);
        else await resources[command](doc);
      }
      const verb = { create: 'created', apply: 'applied', replace: 'replaced', delete: 'deleted' }[command];
      return { out: `Successfully ${verb} ${documents.length} resource(s)`, code: 0 };
    }
    case 'get': {
      if (!sub) throw new CtlError('get needs a KIND (ippool, profile, workloadendpoint, node, clusterinformation, ipamconfiguration)');
      const kind = kindOf(sub);
      const found = await resources.get(kind, third, values.namespace);
      return { out: printResources(kind, found, formatOf(values.output), third !== undefined), code: 0 };
    }
    case 'pool':
      if (sub === 'add' && third) return { out: await addPool(ipam, third, { name: values.name, blockSize: values['block-size'], disabled: values.disabled, natOutgoing: values['nat-outgoing'] }), code: 0 };
      if ((sub === 'rm' || sub === 'remove') && third) return { out: await removePool(ds, ipam, third), code: 0 };
      throw new CtlError('pool add CIDR | pool rm NAME|CIDR');
    case 'ipam':
      if (sub === 'show') return { out: await ipamShow(ipam, { showBlocks: values['show-blocks'] ?? false, ip: values.ip }), code: 0 };
      if (sub === 'configure') return { out: await ipamConfigure(ipam, { strictAffinity: values['strict-affinity'], maxBlocksPerHost: values['max-blocks-per-host'] }), code: 0 };
      if (sub === 'check') {
        const grace = values['grace-period'] === undefined ? 300 : Number(values['grace-period']);
        if (!Number.isFinite(grace) || grace < 0) throw new CtlError('--grace-period must be a number of seconds');
        const started = Date.now();
        const progress = process.stderr.isTTY || env.CALICOCTL_PROGRESS ? (line: string) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${line}\n`) : () => undefined;
        const report = await ipamCheck(ds, ipam, grace, progress);
        if (values.output) writeReport(values.output, report);
        return { out: describeReport(report) + (values.output ? `\nReport written to ${values.output}` : ''), code: report.summary.problems === 0 ? 0 : 1 };
      }
      if (sub === 'release') {
        if (!values['from-report']) throw new CtlError('ipam release needs --from-report REPORT.json (made by ipam check -o)');
        return { out: await ipamReleaseFromReport(ds, ipam, values['from-report']), code: 0 };
      }
      throw new CtlError('ipam show | configure | check | release');
    case 'datastore':
      if (sub === 'init') return { out: await datastoreInit(ds, ipam, values['default-pool']), code: 0 };
      throw new CtlError('datastore init [--default-pool CIDR]');
    case 'node':
      if (sub === 'status') return { out: await nodeStatus(ds, ipam), code: 0 };
      throw new CtlError('node status');
    default:
      throw new CtlUsageError(`unknown command "${command}"\n${USAGE}`);
  }
}

