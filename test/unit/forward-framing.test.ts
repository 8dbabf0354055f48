import test from 'ava';
import { ANSWER_END, decodeForwarded, encodeAnswer, namesItsSocket, type ForwardRequest } from '../../daemon/forward-framing';
import { DEFAULT_DAEMON_SOCKET } from '../../shared/invocation';

test('forward framing - the front\'s request: kind, the socket asked, the environment as env -0 lists it, stdin to the end (NULs, "=" and newlines in values kept)', (t) => {
  const stdin = '{"command": "release",\n "args": {}}\n\n';
  t.deepEqual(decodeForwarded(`calico_mesos\0/run/s.sock\0PATH=/bin\0A=b=c\0MULTI=one\ntwo\0EMPTY=\0\0${stdin}`), {
    kind: 'calico_mesos',
    socket: '/run/s.sock',
    env: { PATH: '/bin', A: 'b=c', MULTI: 'one\ntwo', EMPTY: '' },
    stdin,
  });
  t.deepEqual(decodeForwarded('calico\0/s\0\0'), { kind: 'calico', socket: '/s', env: {}, stdin: '' }, 'an empty environment and stdin');
});

test('forward framing - the answer: the exit code\'s digit, stdout, the end mark', (t) => {
  t.is(encodeAnswer({ stdout: '{"error": null}', exitCode: 0 }), `0{"error": null}${ANSWER_END}`);
  t.is(encodeAnswer({ stdout: '{"code": 7}', exitCode: 1 }), `1{"code": 7}${ANSWER_END}`);
  t.is(encodeAnswer({ stdout: '', exitCode: 300 }), `1${ANSWER_END}`, 'an exit code the digit cannot hold is a failure');
  t.false(ANSWER_END.includes("'"), 'the front keeps it in single quotes');
});

test('forward framing - what is not a request we serve is undefined (the front then runs node)', (t) => {
  for (const text of ['', 'calico_mesos', 'calico_mesos\0/s', 'calico_mesos\0/s\0A=b', 'calico_mesos\0/s\0noequals\0\0{}', 'calico_mesos\0/s\0=x\0\0{}', 'other\0/s\0\0{}', '{"kind": "calico"}']) {
    t.is(decodeForwarded(text), undefined, JSON.stringify(text));
  }
});

test('forward framing - served only when the invocation names the socket it came through, read as node reads it', (t) => {
  const cni = (stdin: string, socket = '/run/a.sock'): ForwardRequest => ({ kind: 'calico', socket, env: {}, stdin });
  t.true(namesItsSocket(cni('{"daemon_socket": "/run/a.sock"}')));
  t.false(namesItsSocket(cni('{"daemon_socket": "/run/b.sock"}')));
  t.false(namesItsSocket(cni('{"daemon_socket": ""}')), 'none');
  t.false(namesItsSocket(cni('{"daemon_socket": 7}')), 'not a path: none');
  t.false(namesItsSocket(cni('{"ipam": {"daemon_socket": "/run/a.sock"}}')), 'only the top level counts: this one names the default');
  t.true(namesItsSocket(cni('{"ipam": {}}', DEFAULT_DAEMON_SOCKET)), 'none named: the default');
  t.true(namesItsSocket(cni('{"daemon_socket": "/run/\\u0061.sock"}')), 'escapes read as JSON');
  t.true(namesItsSocket(cni('{"daemon_socket": "/run/a.sock"')), 'no JSON: the command itself says what is wrong');
  t.true(namesItsSocket(cni(`${'['.repeat(100)}${']'.repeat(100)}`)), 'too deep: likewise');
  const mesos = (env: Record<string, string>): ForwardRequest => ({ kind: 'calico_mesos', socket: '/run/b.sock', env, stdin: '{}' });
  t.true(namesItsSocket(mesos({ CALICO_CNI_SOCKET: '/run/b.sock' })));
  t.false(namesItsSocket(mesos({})), 'the default is another');
  t.false(namesItsSocket(mesos({ CALICO_CNI_SOCKET: '' })));
});
