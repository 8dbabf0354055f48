// Bundles each executable into one self-contained file under dist/ with a node shebang, so it
// runs from any directory without node_modules (the CNI plugins dir, /usr/local/bin).
import { build } from 'esbuild';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { brotliCompressSync, constants } from 'node:zlib';
import protobuf from 'protobufjs';

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
 * The CNI plugins and calico_mesos start a process per command, and compiling the core with its
 * etcd client costs more than node's own start-up. So each one's in-process runner (`entry`) is
 * bundled apart, minified, compressed and kept in a comment at the end of the executable (V8 skips
 * a comment far faster than it scans a 1.5 MB string: measured 2 ms against 19 ms), read back,
 * inflated and compiled only when no node daemon takes the command: forwarding stays cheap.
 */
const RUNNER_MARKER = 'in-process runner, brotli:';

async function embeddedInProcessRunner(entry) {
  // keepNames: errors are told apart by their class names (etcd3's, cockatiel's), which minifying would change.
  const { outputFiles } = await build({ ...common, minify: true, keepNames: true, entryPoints: [entry], write: false, outfile: 'in-process.js' });
  const packed = brotliCompressSync(Buffer.from(outputFiles[0].text), { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).toString('base64');
  return {
    footer: `/*${RUNNER_MARKER}${packed}*/`,
    plugin: {
      name: 'embed-in-process-runner',
      setup(builder) {
        builder.onResolve({ filter: /^\.\/in-process$/ }, () => ({ path: 'in-process', namespace: 'embedded' }));
        builder.onLoad({ filter: /.*/, namespace: 'embedded' }, () => ({
          loader: 'js',
          contents: `
            const { readFileSync } = require('node:fs');
            const { brotliDecompressSync } = require('node:zlib');
            const vm = require('node:vm');
            const file = readFileSync(__filename, 'latin1');
            const marker = '/*' + ${JSON.stringify(RUNNER_MARKER)};
            const packed = file.slice(file.lastIndexOf(marker) + marker.length, file.lastIndexOf('*/'));
            const source = brotliDecompressSync(Buffer.from(packed, 'base64')).toString('utf8');
            const wrapped = vm.runInThisContext('(function (exports, require, module, __filename, __dirname) {' + source + '\\n})', { filename: __filename + ' (in-process runner)' });
            const inner = { exports: {} };
            wrapped(inner.exports, require, inner, __filename, __dirname);
            module.exports = inner.exports;
          `,
        }));
      },
    },
  };
}

/** dist path -> source entry. */
const executables = {
  'dist/bin/calico-install': 'cni/install.ts',
  'dist/bin/calico-libnetwork': 'daemon/main.ts',
  'dist/bin/calicoctl': 'ctl/calicoctl.ts',
};
/** Executables that forward to the daemon, with the in-process runner each embeds. */
const forwarding = {
  'dist/cni/calico': { entry: 'cni/calico.ts', runner: 'cni/in-process.ts' },
  'dist/cni/calico-ipam': { entry: 'cni/calico-ipam.ts', runner: 'cni/in-process.ts' },
  // Also a shell script that forwards without starting node (netmodules/front.sh says how).
  'dist/bin/calico_mesos': { entry: 'netmodules/main.ts', runner: 'netmodules/in-process.ts', front: 'netmodules/front.sh' },
};
const NODE_SHEBANG = '#!/usr/bin/env node';

await mkdir('dist', { recursive: true });
// The bundles are CommonJS; this keeps node from reading them as ESM under our "type": "module".
await writeFile('dist/package.json', '{ "type": "commonjs" }\n');

const runners = Object.fromEntries(await Promise.all([...new Set(Object.values(forwarding).map((f) => f.runner))].map(async (runner) => [runner, await embeddedInProcessRunner(runner)])));
const outputs = [
  ...Object.entries(executables).map(([outfile, entry]) => ({ outfile, entry, plugins: common.plugins, banner: NODE_SHEBANG, footer: '' })),
  ...(await Promise.all(
    Object.entries(forwarding).map(async ([outfile, { entry, runner, front }]) => {
      const banner = front ? (await readFile(front, 'utf8')).trimEnd() : NODE_SHEBANG;
      return { outfile, entry, plugins: [runners[runner].plugin], banner, footer: runners[runner].footer };
    }),
  )),
];
await Promise.all(
  outputs.map(async ({ outfile, entry, plugins, banner, footer }) => {
    await mkdir(dirname(outfile), { recursive: true });
    await build({ ...common, plugins, entryPoints: [entry], outfile, banner: { js: banner }, footer: { js: footer } });
    await chmod(outfile, 0o755);
  }),
);
