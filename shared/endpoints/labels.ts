/**
 * Workload labels as Calico accepts them (Kubernetes label syntax). Orchestrator labels (Mesos
 * network_info labels, Docker container labels) are free text, so they are sanitised the way
 * Calico's Mesos integration does: "/" becomes ".", other invalid characters "-", the ends trimmed
 * to alphanumerics, and values cut to 63 characters.
 */
const MAX_VALUE = 63;
const MAX_NAME = 63;

function clean(text: string, allowed: RegExp, max: number): string {
  return text
    .replace(/\//g, '.')
    .replace(allowed, '-')
    .slice(0, max)
    .replace(/^[^A-Za-z0-9]+/, '')
    .replace(/[^A-Za-z0-9]+$/, '');
}

export function sanitiseLabelKey(key: string): string {
  return clean(key, /[^A-Za-z0-9_.-]/g, MAX_NAME);
}

export function sanitiseLabelValue(value: string): string {
  return clean(value, /[^A-Za-z0-9_.-]/g, MAX_VALUE);
}

/** Sanitises every pair; pairs whose key sanitises to nothing are dropped. */
export function sanitiseLabels(labels: Iterable<readonly [string, string]>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of labels) {
    const k = sanitiseLabelKey(key);
    if (k) out[k] = sanitiseLabelValue(value);
  }
  return out;
}
