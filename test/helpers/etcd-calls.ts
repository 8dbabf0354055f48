/** How many calls of one gRPC service an etcd has finished (handled) or begun (started), from its own metrics. */
async function etcdCalls(endpoint: string, service: string, counter: 'handled' | 'started'): Promise<number> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  let calls = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`grpc_server_${counter}_total{`) && line.includes(`grpc_service="etcdserverpb.${service}"`)) calls += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return calls;
}

/** How many KV calls (reads and transactions) an etcd has served. */
export const etcdKvCalls = (endpoint: string) => etcdCalls(endpoint, 'KV', 'handled');

/** How many watch streams have been opened on an etcd (one carries every watch of a client). */
export const etcdWatchStreams = (endpoint: string) => etcdCalls(endpoint, 'Watch', 'started');
