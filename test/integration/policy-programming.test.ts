import test from 'ava';
import { NFT, applyNftScript, listNftTable } from '../../shared/dataplane/nftables';
import { PolicyCalculator, type EndpointRecord } from '../../shared/policy/calculator';
import { DEFAULT_FELIX_SETTINGS } from '../../shared/policy/model';
import { parseCidr } from '../../shared/net';
import { copyRuleset, planChanges, renderTable, TABLE } from '../../shared/policy/ruleset';
import { validatePolicy, validateProfile } from '../../shared/policy/validate';
import { Netns } from '../../sim/netns';

const namespaces: Netns[] = [];
test.after.always(async () => {
  for (const ns of namespaces) await ns.destroy();
});

async function netns(label: string): Promise<Netns> {
  const ns = await Netns.create(label);
  namespaces.push(ns);
  return ns;
}

/** The table as JSON objects without handles, sorted: equal when the kernel holds the same rules. */
async function tableState(ns: Netns): Promise<string[]> {
  const { stdout } = await ns.exec(NFT, ['-j', 'list', 'table', ...TABLE.split(' ')]);
  const items = (JSON.parse(stdout) as { nftables: Record<string, Record<string, unknown>>[] }).nftables;
  return items
    .filter((item) => !('metainfo' in item))
    .map((item) => {
      const [kind, body] = Object.entries(item)[0]!;
      const { handle: _h, ...rest } = body;
      if (Array.isArray(rest.elem)) rest.elem = [...(rest.elem as unknown[])].map((e) => JSON.stringify(e)).sort();
      return `${kind} ${JSON.stringify(rest)}`;
    })
    .sort();
}

const endpoint = (node: string, ifname: string, ip: string, profiles: string[], labels: Record<string, string> = {}): EndpointRecord => ({
  node, namespace: 'default', interfaceName: ifname, ipv4: [ip], ipv6: [], labels, profiles,
});
const profile = (name: string) => validateProfile({
  metadata: { name },
  spec: { ingress: [{ action: 'Allow', source: { selector: `has(pcn.${name})` } }], egress: [{ action: 'Allow' }], labelsToApply: { [`pcn.${name}`]: '' } },
});

test.serial('policy programming - every change applied incrementally leaves the kernel exactly as a full programming of the same state', async (t) => {
  const incremental = await netns('nft-inc');
  const full = await netns('nft-full');
  const calc = new PolicyCalculator('h1');
  await applyNftScript('full', renderTable(calc.ruleset), { netns: incremental.path });
  const programmed = copyRuleset(calc.ruleset);
  calc.takeTouched();

  // A change that arrives while nft applies the previous one (the daemon goes on taking them).
  let during: (() => void) | undefined;
  const steps: [string, () => void][] = [
    ['profiles', () => {
      calc.setProfile('netA', profile('netA'));
      calc.setProfile('netB', profile('netB'));
    }],
    ['local endpoints', () => {
      calc.setEndpoint('a1', endpoint('h1', 'calia1', '10.0.0.1', ['netA'], { app: 'web' }));
      calc.setEndpoint('b1', endpoint('h1', 'calib1', '10.0.1.1', ['netB']));
    }],
    ['remote endpoints', () => {
      calc.setEndpoint('a2', endpoint('h2', 'calia2', '10.0.0.2', ['netA']));
      calc.setEndpoint('b2', endpoint('h2', 'calib2', '10.0.1.2', ['netB'], { app: 'web' }));
    }],
    ['hosts, and what workloads may not reach', () => {
      calc.setHost('n1', { ipv4: '10.99.0.11', ipv6: 'fd00:99::11' });
      calc.setHost('n2', { ipv4: '10.99.0.12' });
      calc.setProtectedServices([{ address: '10.99.0.1', version: 4, protocol: 'tcp', port: 2379 }, { address: 'fd00:99::1', version: 6, protocol: 'tcp', port: 2379 }, { protocol: 'tcp', port: 9099 }]);
    }],
    ['a local endpoint allowed more sources', () => calc.setEndpoint('s1', { ...endpoint('h1', 'calis1', '10.0.2.1', ['netA']), ipv6: ['fd00::21'], allowedSources: [parseCidr('192.168.0.0/16'), parseCidr('192.168.7.0/24'), parseCidr('10.0.2.0/24')] })],
    ['a host changes address, another goes', () => {
      calc.setHost('n1', { ipv4: '10.99.0.21' });
      calc.setHost('n2', undefined);
    }],
    ['a policy for web', () => calc.setPolicy('web', validatePolicy({
      kind: 'GlobalNetworkPolicy', metadata: { name: 'web' },
      spec: { order: 10, selector: "app == 'web'", ingress: [{ action: 'Allow', protocol: 'TCP', source: { selector: 'has(pcn.netB)', nets: ['10.0.0.0/8'] }, destination: { ports: [8080, '9000:9010'] } }, { action: 'Pass', protocol: 'ICMP', icmp: { type: 8 } }] },
    }))],
    ['a deny policy before it', () => calc.setPolicy('deny', validatePolicy({
      kind: 'GlobalNetworkPolicy', metadata: { name: 'deny' },
      spec: { order: 1, selector: 'all()', types: ['Ingress', 'Egress'], ingress: [{ action: 'Deny', protocol: 'UDP', notProtocol: 'TCP', destination: { notPorts: ['1:1023'] } }], egress: [{ action: 'Log' }, { action: 'Deny', destination: { notNets: ['fd00::/8'], notSelector: 'has(x)' } }] },
    }))],
    ['a label moves an endpoint out of a selector', () => calc.setEndpoint('a1', endpoint('h1', 'calia1', '10.0.0.1', ['netA']))],
    ['a remote endpoint changes address', () => calc.setEndpoint('b2', endpoint('h2', 'calib2', '10.0.1.22', ['netB'], { app: 'web' }))],
    ['a remote endpoint joins while the previous change is being applied', () => {
      calc.setEndpoint('a3', endpoint('h3', 'calia3', '10.0.0.3', ['netA']));
      during = () => calc.setEndpoint('a4', endpoint('h3', 'calia4', '10.0.0.4', ['netA']));
    }],
    ['the change made meanwhile is programmed next', () => calc.setEndpoint('a3', undefined)],
    ['a profile stops applying its label', () => calc.setProfile('netB', { ...profile('netB'), labelsToApply: {} })],
    ['felix settings', () => calc.setFelixSettings({ ...DEFAULT_FELIX_SETTINGS, defaultEndpointToHostAction: 'Return', allowVXLANPacketsFromWorkloads: true, workloadSourceSpoofing: 'Any' })],
    ['the datastore allowed again', () => calc.setFelixSettings({ ...calc.felixSettings, allowDatastoreAccessFromWorkloads: true })],
    ['a policy goes', () => calc.setPolicy('deny', undefined)],
    ['an endpoint goes', () => calc.setEndpoint('b1', undefined)],
    ['everything goes', () => {
      for (const key of ['a1', 'a2', 'a4', 'b2', 's1']) calc.setEndpoint(key, undefined);
      calc.setHost('n1', undefined);
      calc.setPolicy('web', undefined);
      calc.setProfile('netA', undefined);
      calc.setProfile('netB', undefined);
    }],
  ];
  for (const [what, change] of steps) {
    change();
    const touched = calc.takeTouched();
    const plan = planChanges(programmed, calc.ruleset, touched);
    const midway = during;
    during = undefined;
    midway?.();
    await applyNftScript(what, plan.script, { netns: incremental.path });
    plan.commit();
    // The kernel now lags the calculator by the change made midway; the next step catches up.
    if (midway) continue;
    await applyNftScript(what, renderTable(calc.ruleset), { netns: full.path });
    t.deepEqual(await tableState(incremental), await tableState(full), `after: ${what}`);
    t.deepEqual(programmed, copyRuleset(calc.ruleset), `the record of what is programmed, after: ${what}`);
  }
  // With nothing left, only the fixed chains and the empty maps remain.
  const listing = (await listNftTable(TABLE, { netns: incremental.path }))!;
  t.notRegex(listing, /chain [ep][ie]_|set [sn][46]_/);
});
