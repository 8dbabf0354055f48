/** How many KV calls (reads and transactions) an etcd has served, from its own metrics. */
export async function etcdKvCalls(endpoint: string): Promise<number> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  let calls = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('grpc_server_handled_total{') && line.includes('grpc_service="etcdserverpb.KV"')) calls += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return calls;
}
