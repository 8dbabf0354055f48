import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { HOST_PATH, runPlugin } from '../sim/cni-exec';
import { CniWorld } from '../sim/world';
import { NodeDaemon } from '../sim/daemon';
const world = await CniWorld.create();
try {
  const agent = await world.addAgent();
  const { prefix } = await world.scenario('cpu', { v4: '10.210.0.0/16', v6: 'fd00:210::/64' });
  const daemon = await NodeDaemon.start(agent.host);
  const conf = world.network('bench-net', prefix, 'bench-agent', { cniVersion: '1.0.0', log_file_path: '', daemon_socket: daemon.cniSocket });
  const out: string[] = [];
  for (let i = 0; i < 12; i++) {
    const id = randomUUID(); await agent.createContainer(id);
    const env = { ...agent.env('ADD', id, 'eth0'), PATH: HOST_PATH };
    const a = await runPlugin(agent.host, '/usr/bin/time', env, JSON.stringify(conf), 60000, ['-f', 'ADD %U %S %M', join(world.pluginsDir, 'calico')]);
    const v = await runPlugin(agent.host, '/usr/bin/time', { ...env, CNI_COMMAND: 'VERSION' }, JSON.stringify(conf), 60000, ['-f', 'VER %U %S %M', join(world.pluginsDir, 'calico')]);
    const n = await runPlugin(agent.host, '/usr/bin/time', { PATH: HOST_PATH }, '', 60000, ['-f', 'NODE %U %S %M', process.execPath, '-e', '0']);
    out.push(a.stderr.trim().split('\n').pop()!, v.stderr.trim().split('\n').pop()!, n.stderr.trim().split('\n').pop()!);
    await runPlugin(agent.host, join(world.pluginsDir, 'calico'), { ...env, CNI_COMMAND: 'DEL' }, JSON.stringify(conf));
    await agent.destroy(id);
  }
  console.log(out.slice(6).join('\n'));
  await daemon.destroy();
} finally { await world.destroy(); }
