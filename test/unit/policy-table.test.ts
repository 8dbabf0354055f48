import test from 'ava';
import { PolicyCalculator } from '../../shared/policy/calculator';
import { DEFAULT_FELIX_SETTINGS } from '../../shared/policy/model';
import { FIXED_PART, HOST_ACTION_CHAIN, WORKLOAD_ENCAP_CHAIN, renderTable } from '../../shared/policy/ruleset';
import { ENCAPSULATIONS } from '../../shared/routing/encapsulations';

test('policy table - the fixed part closes every workload before anything is read, and changes nothing when added again', (t) => {
  t.regex(FIXED_PART, /add chain inet calico prerouting \{ type filter hook prerouting priority raw; policy accept; \}\nflush chain inet calico prerouting\nadd rule inet calico prerouting iifname "cali\*" goto wl-guard/);
  t.regex(FIXED_PART, /add rule inet calico wl-guard iifname \. ip saddr != @wl_src4 iifname \. ip saddr != @wl_pfx4 drop\nadd rule inet calico wl-guard iifname \. ip6 saddr != @wl_src6 iifname \. ip6 saddr != @wl_pfx6 drop/, 'a source that is not the interface\'s own is dropped, before anything else but ND');
  // What workloads may never reach or send: on a flow's first packet, past the conntrack rules, before any policy.
  t.regex(FIXED_PART, /add rule inet calico from-wl ct state invalid drop\nadd rule inet calico from-wl ip daddr \. meta l4proto \. th dport @protected4 drop\nadd rule inet calico from-wl ip6 daddr \. meta l4proto \. th dport @protected6 drop\nadd rule inet calico from-wl jump wl-encap\nadd rule inet calico from-wl meta mark set/);
  t.regex(FIXED_PART, /add rule inet calico wl-to-host ip daddr \. meta l4proto \. th dport @protected4 drop\nadd rule inet calico wl-to-host ip6 daddr \. meta l4proto \. th dport @protected6 drop\nadd rule inet calico wl-to-host meta l4proto \. th dport @protected_local drop\nadd rule inet calico wl-to-host jump wl-encap\nadd rule inet calico wl-to-host meta mark set/);
  // Only additions of what may be absent, and rewrites of fixed chains: no element, map entry or kept chain is flushed.
  for (const line of FIXED_PART.trim().split('\n')) t.regex(line, /^(add (table|set|map|chain|rule) |flush chain inet calico (wl-guard|from-wl|to-wl|wl-to-host|prerouting|forward|input)$)/, line);
  t.false(FIXED_PART.includes(`flush chain inet calico ${HOST_ACTION_CHAIN}`));
  t.false(FIXED_PART.includes(`flush chain inet calico ${WORKLOAD_ENCAP_CHAIN}`));
});

test('policy table - every encapsulation: dropped from workloads unless FelixConfiguration allows it, and taken by a host only from known Nodes (the IPIP plan, for kernels without ipip)', (t) => {
  for (const encapsulation of ENCAPSULATIONS) {
    t.true(FIXED_PART.includes(`add rule inet calico input ${encapsulation.match} ip saddr != @hosts4 drop`), `${encapsulation.name}: IPv4 hosts only`);
    t.true(FIXED_PART.includes(`add rule inet calico input ${encapsulation.match} ip6 saddr != @hosts6 drop`), `${encapsulation.name}: IPv6 hosts only`);
    const calc = new PolicyCalculator('h1');
    t.true(calc.ruleset.chains.get(WORKLOAD_ENCAP_CHAIN)!.includes(`${encapsulation.match} drop`), `${encapsulation.name}: dropped from workloads by default`);
    calc.setFelixSettings({ ...DEFAULT_FELIX_SETTINGS, [encapsulation.allowFromWorkloads]: true });
    t.false(calc.ruleset.chains.get(WORKLOAD_ENCAP_CHAIN)!.includes(`${encapsulation.match} drop`), `${encapsulation.name}: ${encapsulation.allowFromWorkloads} lifts it`);
    t.true(calc.takeTouched().chains.has(WORKLOAD_ENCAP_CHAIN));
  }
  t.true(ENCAPSULATIONS.some((e) => e.match === 'meta l4proto ipip'), 'IPIP is protocol 4');
  const calc = new PolicyCalculator('h1');
  calc.setHost('n1', { ipv4: '10.99.0.11' });
  t.regex(renderTable(calc.ruleset), /add element inet calico hosts4 \{ 10\.99\.0\.11 \}/);
});

test('policy table - defaultEndpointToHostAction: Drop leaves the host-action chain empty (the drop after it decides); Accept and Return accept', (t) => {
  const calc = new PolicyCalculator('h1');
  t.deepEqual(calc.ruleset.chains.get(HOST_ACTION_CHAIN), []);
  calc.setFelixSettings({ ...DEFAULT_FELIX_SETTINGS, defaultEndpointToHostAction: 'Return' });
  t.deepEqual(calc.ruleset.chains.get(HOST_ACTION_CHAIN), ['accept']);
  calc.takeTouched();
  calc.setFelixSettings({ ...DEFAULT_FELIX_SETTINGS, defaultEndpointToHostAction: 'Accept' });
  t.false(calc.takeTouched().chains.has(HOST_ACTION_CHAIN), 'the same rules: nothing to program');
});
