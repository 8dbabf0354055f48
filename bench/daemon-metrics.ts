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

/**
 * Each series' mean of a histogram in milliseconds (its _sum over its _count), keyed by its labels
 * as the exposition writes them (`command="ADD",phase="ipam"`).
 */
export function histogramMeansMs(text: string, name: string): Map<string, number> {
  const sums = new Map<string, number>();
  const counts = new Map<string, number>();
  for (const [, kind, labels, value] of text.matchAll(new RegExp(`^${name}_(sum|count)\\{([^}]*)\\} (\\S+)$`, 'gm'))) {
    (kind === 'sum' ? sums : counts).set(labels!, Number(value));
  }
  return new Map([...sums].map(([labels, sum]) => [labels, (sum / (counts.get(labels) || 1)) * 1000]));
}
