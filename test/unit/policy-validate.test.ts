import test from 'ava';
import { formatCidr } from '../../shared/net';
import { matches, printSelector } from '../../shared/policy/selector';
import { DEFAULT_FELIX_SETTINGS } from '../../shared/policy/model';
import { PolicyValidationError, validateFelixConfiguration, validatePolicy, validateProfile } from '../../shared/policy/validate';

const gnp = (spec: Record<string, unknown>, name = 'p') => ({ kind: 'GlobalNetworkPolicy', metadata: { name }, spec });
const np = (spec: Record<string, unknown>, namespace = 'libnetwork') => ({ kind: 'NetworkPolicy', metadata: { name: 'p', namespace }, spec });

test('policy validation - a full rule is normalised', (t) => {
  const policy = validatePolicy(gnp({
    order: 10,
    selector: "has(pcn.netA)",
    ingress: [{
      action: 'allow',
      protocol: 'TCP',
      source: { selector: 'has(pcn.netB)', nets: ['10.0.0.7', '10.1.2.3/16'], notPorts: [] },
      destination: { ports: [8080, '9000:9010'] },
    }],
    egress: [{ action: 'Deny', protocol: 'ICMP', icmp: { type: 8, code: 0 }, destination: { notNets: ['192.168.0.0/24'] } }],
  }));
  t.is(policy.order, 10);
  t.deepEqual(policy.types, ['ingress', 'egress']);
  const [rule] = policy.ingress;
  t.is(rule!.action, 'Allow');
  t.deepEqual(rule!.protocol, { number: 6, name: 'TCP' });
  t.deepEqual(rule!.source.nets.map(formatCidr), ['10.0.0.7/32', '10.1.0.0/16']);
  t.is(printSelector(rule!.source.selector!), 'has(pcn.netB)');
  t.deepEqual(rule!.destination.ports, [{ from: 8080, to: 8080 }, { from: 9000, to: 9010 }]);
  t.deepEqual(policy.egress[0]!.icmp, { type: 8, code: 0 });
  t.deepEqual(validatePolicy(gnp({ ingress: [{ action: 'Allow', protocol: 17 }] })).ingress[0]!.protocol, { number: 17, name: 'UDP' });
  t.deepEqual(validatePolicy(gnp({ ingress: [{ action: 'Allow', protocol: '47' }] })).ingress[0]!.protocol, { number: 47 });
});

test('policy validation - types default as Calico, and the "default." tier prefix is the same policy', (t) => {
  t.deepEqual(validatePolicy(gnp({})).types, ['ingress']);
  t.deepEqual(validatePolicy(gnp({ egress: [{ action: 'Allow' }] })).types, ['egress']);
  t.deepEqual(validatePolicy(gnp({ ingress: [{ action: 'Allow' }], egress: [{ action: 'Allow' }] })).types, ['ingress', 'egress']);
  t.deepEqual(validatePolicy(gnp({ types: ['Egress', 'egress'] })).types, ['egress']);
  t.is(validatePolicy(gnp({}, 'default.web')).name, 'web');
});

test('policy validation - a NetworkPolicy applies to, and looks for peers in, its own namespace only', (t) => {
  const policy = validatePolicy(np({ selector: "app == 'x'", ingress: [{ action: 'Allow', source: { selector: "app == 'y'" } }, { action: 'Allow', source: { notSelector: "app == 'z'" } }] }));
  t.is(policy.namespace, 'libnetwork');
  const inNs = { app: 'x', 'projectcalico.org/namespace': 'libnetwork' };
  const elsewhere = { app: 'x', 'projectcalico.org/namespace': 'default' };
  t.true(matches(policy.selector, inNs));
  t.false(matches(policy.selector, elsewhere));
  const peer = policy.ingress[0]!.source.selector!;
  t.true(matches(peer, { app: 'y', 'projectcalico.org/namespace': 'libnetwork' }));
  t.false(matches(peer, { app: 'y', 'projectcalico.org/namespace': 'default' }));
  // notSelector alone: peers of this namespace, minus those it names.
  t.true(matches(policy.ingress[1]!.source.selector!, inNs));
  t.false(matches(policy.ingress[1]!.source.selector!, elsewhere));
  t.is(printSelector(policy.ingress[1]!.source.notSelector!), "app == 'z'");
  // In a global policy (or a profile), a notSelector alone names no endpoints: any other address matches.
  const globalNot = validatePolicy(gnp({ ingress: [{ action: 'Allow', source: { notSelector: "app == 'z'" } }] }));
  t.is(globalNot.ingress[0]!.source.selector, undefined);
  // A namespaceSelector picks namespaces by name.
  const cross = validatePolicy(np({ ingress: [{ action: 'Allow', source: { namespaceSelector: "projectcalico.org/name == 'default'" } }] }));
  t.true(matches(cross.ingress[0]!.source.selector!, elsewhere));
  t.false(matches(cross.ingress[0]!.source.selector!, inNs));
  const global = validatePolicy(gnp({ namespaceSelector: "projectcalico.org/name == 'libnetwork' && has(team)" }));
  t.false(matches(global.selector, inNs), 'namespaces have no label but their name');
});

const refusals: [string, unknown, RegExp][] = [
  ['no action', gnp({ ingress: [{}] }), /^spec\.ingress\[0\]\.action: must be one of Allow, Deny, Log, Pass/],
  ['bad action', gnp({ egress: [{ action: 'Reject' }] }), /^spec\.egress\[0\]\.action: .*"Reject"/],
  ['bad selector', gnp({ selector: "app = 'x'" }), /^spec\.selector: invalid selector "app = 'x'": unexpected character "=" at position 4/],
  ['bad rule selector', gnp({ ingress: [{ action: 'Allow', source: { selector: 'has(a' } }] }), /^spec\.ingress\[0\]\.source\.selector: invalid selector "has\(a": expected "\)" to close has\(a, found the end at position 5/],
  ['ports without protocol', gnp({ ingress: [{ action: 'Allow', destination: { ports: [80] } }] }), /^spec\.ingress\[0\]\.destination\.ports: ports need protocol/],
  ['ports with ICMP', gnp({ ingress: [{ action: 'Allow', protocol: 'ICMP', destination: { ports: [80] } }] }), /ports need protocol/],
  ['port out of range', gnp({ ingress: [{ action: 'Allow', protocol: 'TCP', destination: { ports: [70000] } }] }), /^spec\.ingress\[0\]\.destination\.ports\[0\]: must be a whole number from 0 to 65535/],
  ['reversed range', gnp({ ingress: [{ action: 'Allow', protocol: 'TCP', destination: { ports: ['90:80'] } }] }), /ends before it starts/],
  ['named port', gnp({ ingress: [{ action: 'Allow', protocol: 'TCP', destination: { ports: ['http'] } }] }), /named ports are not supported/],
  ['bad protocol', gnp({ ingress: [{ action: 'Allow', protocol: 'GRE' }] }), /^spec\.ingress\[0\]\.protocol: must be TCP, UDP/],
  ['protocol 0', gnp({ ingress: [{ action: 'Allow', protocol: 0 }] }), /from 1 to 255/],
  ['bad net', gnp({ ingress: [{ action: 'Allow', source: { nets: ['10.0.0.0/33'] } }] }), /^spec\.ingress\[0\]\.source\.nets\[0\]:/],
  ['net of the other version', gnp({ ingress: [{ action: 'Allow', ipVersion: 6, source: { nets: ['10.0.0.0/8'] } }] }), /IPv4 network but ipVersion is 6/],
  ['ipVersion 5', gnp({ ingress: [{ action: 'Allow', ipVersion: 5 }] }), /ipVersion: must be 4 or 6/],
  ['ICMP with ipVersion 6', gnp({ ingress: [{ action: 'Allow', protocol: 'ICMP', ipVersion: 6 }] }), /protocol ICMP is IPv4/],
  ['icmp without protocol', gnp({ ingress: [{ action: 'Allow', icmp: { type: 8 } }] }), /icmp: needs protocol ICMP or ICMPv6/],
  ['icmp code alone', gnp({ ingress: [{ action: 'Allow', protocol: 'ICMP', icmp: { code: 0 } }] }), /icmp\.type: is required/],
  ['icmp type 255', gnp({ ingress: [{ action: 'Allow', protocol: 'ICMP', icmp: { type: 255 } }] }), /from 0 to 254/],
  ['doNotTrack', gnp({ doNotTrack: true }), /^spec\.doNotTrack: doNotTrack policies are not supported/],
  ['preDNAT', gnp({ preDNAT: true }), /^spec\.preDNAT: preDNAT policies are not supported/],
  ['http', gnp({ ingress: [{ action: 'Allow', http: { methods: ['GET'] } }] }), /http: HTTP matches are not supported/],
  ['unknown field', gnp({ ingress: [{ action: 'Allow', sauce: 1 }] }), /^spec\.ingress\[0\]\.sauce: unknown field/],
  ['rules of a type not listed', gnp({ types: ['Ingress'], egress: [{ action: 'Allow' }] }), /^spec\.egress: has rules but spec.types does not include Egress/],
  ['bad type', gnp({ types: ['Sideways'] }), /^spec\.types\[0\]: must be one of Ingress, Egress/],
  ['bad order', gnp({ order: 'first' }), /^spec\.order: must be a number/],
  ['bad name', gnp({}, 'Bad_Name'), /^metadata\.name: must be lower-case/],
  ['other tier', gnp({ tier: 'security' }), /^spec\.tier: only the default tier/],
  ['namespaceSelector on a NetworkPolicy', np({ namespaceSelector: 'all()' }), /is for global policies only/],
  ['rules not a list', gnp({ ingress: { action: 'Allow' } }), /^spec\.ingress: must be a list/],
];

for (const [what, resource, message] of refusals) {
  test(`policy validation - refused: ${what}`, (t) => {
    const err = t.throws(() => validatePolicy(resource), { instanceOf: PolicyValidationError });
    t.is(err!.code, 'POLICY_INVALID');
    t.regex(err!.message, message);
  });
}

test('policy validation - profiles and Felix configuration', (t) => {
  const profile = validateProfile({ metadata: { name: 'netA' }, spec: { ingress: [{ action: 'Allow', source: { selector: 'has(pcn.netA)' } }], egress: [{ action: 'Allow' }], labelsToApply: { 'pcn.netA': '' } } });
  t.deepEqual(profile.labelsToApply, { 'pcn.netA': '' });
  t.is(profile.ingress.length, 1);
  t.throws(() => validateProfile({ metadata: { name: 'x' }, spec: { labelsToApply: { a: 1 } } }), { message: /spec\.labelsToApply\.a: must be a string/ });
  t.deepEqual(validateFelixConfiguration({ spec: {} }), DEFAULT_FELIX_SETTINGS);
  t.deepEqual(validateFelixConfiguration({ spec: { defaultEndpointToHostAction: 'ACCEPT', reportingInterval: '30s' } }), { ...DEFAULT_FELIX_SETTINGS, defaultEndpointToHostAction: 'Accept' });
  t.deepEqual(validateFelixConfiguration({ spec: { allowVXLANPacketsFromWorkloads: true, allowIPIPPacketsFromWorkloads: false, workloadSourceSpoofing: 'any', allowDatastoreAccessFromWorkloads: true } }), {
    defaultEndpointToHostAction: 'Drop', allowVXLANPacketsFromWorkloads: true, allowIPIPPacketsFromWorkloads: false, workloadSourceSpoofing: 'Any', allowDatastoreAccessFromWorkloads: true,
  });
  t.throws(() => validateFelixConfiguration({ spec: { workloadSourceSpoofing: 'Some' } }), { message: /spec\.workloadSourceSpoofing: must be one of Disabled, Any/ });
  t.throws(() => validateFelixConfiguration({ spec: { allowDatastoreAccessFromWorkloads: 'true' } }), { message: /spec\.allowDatastoreAccessFromWorkloads: must be true or false/ });
  t.throws(() => validateFelixConfiguration({ spec: { defaultEndpointToHostAction: 'Maybe' } }), { message: /spec\.defaultEndpointToHostAction: must be one of Drop, Accept, Return/ });
});
