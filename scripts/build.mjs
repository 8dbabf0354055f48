// Bundles each executable into one self-contained file under dist/ with a node shebang, so it
// runs from any directory without node_modules (the CNI plugins dir, /usr/local/bin).
import { build } from 'esbuild';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';

/** dist path -> source entry. */
const executables = {
  'dist/cni/calico': 'cni/calico.ts',
  'dist/cni/calico-ipam': 'cni/calico-ipam.ts',
  'dist/bin/calico-install': 'cni/install.ts',
  'dist/bin/calico-demo': 'scripts/demo.ts',
};

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

await mkdir('dist', { recursive: true });
// The bundles are CommonJS; this keeps node from reading them as ESM under our "type": "module".
await writeFile('dist/package.json', '{ "type": "commonjs" }\n');

await Promise.all(
  Object.entries(executables).map(async ([outfile, entry]) => {
    await mkdir(dirname(outfile), { recursive: true });
    await build({
      entryPoints: [entry],
      outfile,
      bundle: true,
      platform: 'node',
      target: 'node18',
      format: 'cjs',
      banner: { js: '#!/usr/bin/env node' },
      legalComments: 'none',
      logLevel: 'warning',
      plugins: [inlineEtcdProtos],
    });
    await chmod(outfile, 0o755);
  }),
);
