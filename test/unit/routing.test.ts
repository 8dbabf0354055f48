import test from 'ava';
import { parseAddress } from '../../shared/net/address';
import { parseCidr } from '../../shared/net/cidr';
import { desiredRoutes, routeKey } from '../../shared/routing/desired-routes';

const hosts = [
  { name: 'a', ipv4Address: '10.99.0.11/24', ipv6Address: 'fd99::11/64' },
  { name: 'b', ipv4Address: '10.99.0.12/24', ipv6Address: 'fd99::12/64' },
  { name: 'far', ipv4Address: '192.168.7.1/24' },
];
const affinity = (host: string, cidr: string, confirmed = true) => ({ host, cidr: parseCidr(cidr), confirmed });

test('routing - other hosts\' confirmed blocks via them, unreachable for our own', (t) => {
  const routes = desiredRoutes('a', [
    affinity('a', '10.1.0.0/26'),
    affinity('b', '10.1.0.64/26'),
    affinity('b', 'fd00:1::40/122'),
    affinity('b', '10.1.0.128/26', false),
    affinity('far', '10.1.0.192/26'),
    affinity('gone', '10.1.1.0/26'),
  ], hosts);
  t.deepEqual(routes.map(routeKey).sort(), ['10.1.0.64/26 via 10.99.0.12', 'fd00:1::40/122 via fd99::12', 'unreachable 10.1.0.0/26']);
});

test('routing - a host without an address of its own routes only to itself', (t) => {
  t.deepEqual(desiredRoutes('x', [affinity('b', '10.1.0.64/26'), affinity('x', '10.1.0.0/26')], hosts).map(routeKey), ['unreachable 10.1.0.0/26']);
});

test('routing - an address of our block held by another host\'s workload is routed to that host; one of ours or of an unknown host is not', (t) => {
  const lent = [
    { address: parseAddress('10.1.0.34'), host: 'b' },
    { address: parseAddress('fd00:1::5'), host: 'b' },
    { address: parseAddress('10.1.0.35'), host: 'a' },
    { address: parseAddress('10.1.0.36'), host: 'far' },
  ];
  const routes = desiredRoutes('a', [affinity('a', '10.1.0.0/26')], hosts, lent);
  t.deepEqual(routes.map(routeKey).sort(), ['10.1.0.34/32 via 10.99.0.12', 'fd00:1::5/128 via fd99::12', 'unreachable 10.1.0.0/26']);
});
