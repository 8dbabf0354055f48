import test from 'ava';
import { readFileSync } from 'node:fs';
import { DOCKER_LABEL_PREFIX, endpointLabelsOf } from '../../cnm/container-labels';

test('container labels - only org.projectcalico.label.* labels count, the prefix removed, sanitised as Mesos labels; reserved and empty keys are dropped and named', (t) => {
  const { labels, refused, dropped } = endpointLabelsOf({
    [`${DOCKER_LABEL_PREFIX}app`]: 'web',
    [`${DOCKER_LABEL_PREFIX}team/name`]: 'a b',
    [`${DOCKER_LABEL_PREFIX}long`]: 'x'.repeat(80),
    [`${DOCKER_LABEL_PREFIX}pcn.db`]: '',
    [`${DOCKER_LABEL_PREFIX}projectcalico.org/namespace`]: 'default',
    [`${DOCKER_LABEL_PREFIX}///`]: 'nothing',
    'com.example.other': 'ignored',
  });
  t.deepEqual(labels, { app: 'web', 'team.name': 'a-b', long: 'x'.repeat(63) });
  t.deepEqual(refused, ['pcn.db', 'projectcalico.org.namespace']);
  t.deepEqual(dropped, ['///']);
});

test('container labels - the Marathon Docker sample passes its labels as Calico reads them', (t) => {
  const app = JSON.parse(readFileSync('conf/marathon-docker.json', 'utf8')) as { container: { docker: { parameters: { key: string; value: string }[] } } };
  const dockerLabels = Object.fromEntries(app.container.docker.parameters.filter((p) => p.key === 'label').map((p) => p.value.split('=') as [string, string]));
  t.deepEqual(endpointLabelsOf(dockerLabels).labels, { app: 'web', tier: 'front' });
});
