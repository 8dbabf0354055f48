// Bundles each executable into one self-contained file under dist/, so it runs from any directory
// without node_modules (the CNI plugins dir, /usr/local/bin). Run with tsx: the shell front's
// values come from the TypeScript that defines them.
import { build } from 'esbuild';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';
import { SUPPORTED_VERSIONS, LATEST_VERSION } from '../cni/version.ts';
import { ANSWER_END } from '../daemon/forward-framing.ts';
import { DEFAULT_DAEMON_SOCKET } from '../shared/invocation.ts';

/**
 * etcd3 parses its .proto files from disk when loaded, which a single-file bundle cannot ship.
 * Parse them here instead and inline the result: self-contained, and faster to start.
 */
const inlineEtcdProtos = {
  name: 'inline-etcd3-protos',
  setup(builder) {
    builder.onLoad({ filter: /etcd3[\\/]lib[\\/]connection-pool\.js$/ }, async (args) => {
      const source = await readFile(args.path, 'utf8');
      // keepCase as etcd3 loads them: field names stay snake_case (mod_revision, range_end).
      const root = new protobuf.Root().loadSync(join(dirname(args.path), '../proto/rpc.proto'), { keepCase: true });
      const loadCall = '(0, proto_loader_1.loadSync)(`${__dirname}/../proto/rpc.proto`,';
      if (!source.includes(loadCall)) throw new Error(`etcd3 changed how it loads its protos (${args.path}): update scripts/build.mjs`);
      return { contents: source.replace(loadCall, `(0, proto_loader_1.fromJSON)(${JSON.stringify(root.toJSON())},`), loader: 'js' };
    });
  },
};

const common = {
  bundle: true,
  platform: 'node',
  target: 'node18',
  format: 'cjs',
  legalComments: 'none',
  logLevel: 'warning',
  plugins: [inlineEtcdProtos],
};

/**
 * The shell front every per-command executable starts with (shared/front.sh), its blanks filled:
 * which executable it is, the CNI versions VERSION answers with, the daemon's answer end mark and
 * default socket. Each value goes inside single quotes or into a word list: none may hold a quote.
 */
async function frontFor(kind) {
  const values = {
    KIND: kind,
    LATEST_CNI_VERSION: LATEST_VERSION,
    CNI_VERSIONS: SUPPORTED_VERSIONS.join(' '),
    CNI_VERSIONS_JSON: JSON.stringify(SUPPORTED_VERSIONS),
    ANSWER_END,
    DEFAULT_SOCKET: DEFAULT_DAEMON_SOCKET,
  };
  const front = (await readFile('shared/front.sh', 'utf8')).trimEnd();
  return front.replace(/@([A-Z_]+)@/g, (_, name) => {
    const value = values[name];
    if (value === undefined || value.includes("'")) throw new Error(`shared/front.sh: no value for @${name}@, or one with a quote`);
    return value;
  });
}

/** dist path -> source entry. */
const executables = {
  'dist/bin/calico-install': 'cni/install.ts',
  'dist/bin/calico-libnetwork': 'daemon/main.ts',
  'dist/bin/calicoctl': 'ctl/calicoctl.ts',
};
/** The executables a runtime starts per command: the shell front first, node only standalone. */
const perCommand = {
  'dist/cni/calico': { entry: 'cni/calico.ts', kind: 'calico' },
  'dist/cni/calico-ipam': { entry: 'cni/calico-ipam.ts', kind: 'calico-ipam' },
  'dist/bin/calico_mesos': { entry: 'netmodules/main.ts', kind: 'calico_mesos' },
};
const NODE_SHEBANG = '#!/usr/bin/env node';

await mkdir('dist', { recursive: true });
// The bundles are CommonJS; this keeps node from reading them as ESM under our "type": "module".
await writeFile('dist/package.json', '{ "type": "commonjs" }\n');

const outputs = [
  ...Object.entries(executables).map(([outfile, entry]) => ({ outfile, entry, banner: NODE_SHEBANG })),
  ...(await Promise.all(Object.entries(perCommand).map(async ([outfile, { entry, kind }]) => ({ outfile, entry, banner: await frontFor(kind) })))),
];
await Promise.all(
  outputs.map(async ({ outfile, entry, banner }) => {
    await mkdir(dirname(outfile), { recursive: true });
    await build({ ...common, entryPoints: [entry], outfile, banner: { js: banner } });
    await chmod(outfile, 0o755);
  }),
);
