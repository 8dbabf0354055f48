/** A simulated agent's node daemon's metrics, read from inside the agent's namespace. */
import type { MesosAgent } from '../sim/mesos-agent';

export async function scrapeMetrics(agent: MesosAgent, port: number): Promise<string> {
  const fetchMetrics = `fetch('http://127.0.0.1:${port}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`;
  return (await agent.host.exec(process.execPath, ['-e', fetchMetrics])).stdout;
}

/** One sample's value in the exposition text (the first line that names it), or undefined. */
export function metricValue(text: string, sample: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? undefined : Number(line.slice(sample.length + 1));
}
