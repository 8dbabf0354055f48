import test from 'ava';
import { formatAddress, hostPrefix, parseAddress } from '../../shared/net/address';
import { cidrContains, cidrSize, cidrsOverlap, enclosingCidr, formatCidr, parseCidr } from '../../shared/net/cidr';

test('net - parses and canonicalises IPv4 and IPv6 addresses', (t) => {
  t.is(formatAddress(parseAddress('10.1.2.3')), '10.1.2.3');
  t.is(formatAddress(parseAddress('2001:0db8:0:0:0:0:0:1')), '2001:db8::1');
  t.is(formatAddress(parseAddress('2001:db8:0:0:1:0:0:1')), '2001:db8::1:0:0:1');
  t.is(hostPrefix(parseAddress('fd00::5')), 'fd00::5/128');
  t.is(hostPrefix(parseAddress('192.168.0.1')), '192.168.0.1/32');
});

test('net - refuses malformed addresses naming the field', (t) => {
  for (const bad of ['1.2.3', '1.2.3.256', '01.2.3.4', ' 1.2.3.4', '1::2::3', 'g::1', '', 'fe80::1%eth0']) {
    const err = t.throws(() => parseAddress(bad, 'ips[0]'));
    t.regex(err!.message, /invalid ips\[0\]/);
  }
});

test('net - CIDRs must be network addresses with a valid prefix', (t) => {
  t.is(formatCidr(parseCidr('10.0.0.0/8')), '10.0.0.0/8');
  t.is(formatCidr(parseCidr('fd00:0::/48')), 'fd00::/48');
  t.regex(t.throws(() => parseCidr('10.0.0.1/8'))!.message, /not a network address \(did you mean 10\.0\.0\.0\/8\?\)/);
  t.regex(t.throws(() => parseCidr('10.0.0.0/33'))!.message, /invalid prefix length/);
  t.regex(t.throws(() => parseCidr('10.0.0.0'))!.message, /no prefix length/);
  t.regex(t.throws(() => parseCidr('10.0.0.0/x'))!.message, /invalid prefix length/);
  t.is(formatCidr(parseCidr('10.0.0.1/8', 'cidr', true)), '10.0.0.0/8');
});

test('net - containment, overlap, size and enclosing block', (t) => {
  const pool = parseCidr('10.10.0.0/16');
  t.true(cidrContains(pool, parseAddress('10.10.255.255')));
  t.false(cidrContains(pool, parseAddress('10.11.0.0')));
  t.false(cidrContains(pool, parseAddress('::1')));
  t.true(cidrsOverlap(pool, parseCidr('10.0.0.0/8')));
  t.true(cidrsOverlap(pool, parseCidr('10.10.5.0/24')));
  t.false(cidrsOverlap(pool, parseCidr('10.11.0.0/16')));
  t.false(cidrsOverlap(pool, parseCidr('::/0')));
  t.is(cidrSize(parseCidr('10.0.0.0/26')), 64n);
  t.is(cidrSize(parseCidr('fd00::/122')), 64n);
  t.is(formatCidr(enclosingCidr(parseAddress('10.10.1.77'), 26)), '10.10.1.64/26');
  t.is(formatCidr(enclosingCidr(parseAddress('fd00::1:ff'), 122)), 'fd00::1:c0/122');
});
