import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  BASE_FILE,
  ComposeFile,
  DOCKERFILE,
  LOCAL_OVERRIDE,
  checkBaseFile,
  checkDockerfile,
  checkLocalOverride,
  envNamesReadByPtctl,
  LOCAL_DROPPED,
  localProfile,
  parseYaml,
} from '../compose/compose-file.js';
import { parse } from 'yaml';

const base = readFileSync(BASE_FILE, 'utf8');
const override = readFileSync(LOCAL_OVERRIDE, 'utf8');
const dockerfile = readFileSync(DOCKERFILE, 'utf8');
const baseFile = (): ComposeFile => {
  const { value } = parseYaml(ComposeFile, base, 'docker-compose.yml');
  assert.ok(value);
  return value;
};

/** A copy of `text` with one edit; the edit must really change it, or the mutation test proves nothing. */
function mutate(text: string, from: string | RegExp, to: string): string {
  const out = text.replace(from, to);
  assert.notEqual(out, text, `mutation ${String(from)} did not apply`);
  return out;
}

void test('the config reads the connection env names the compose file relies on', () => {
  const names = envNamesReadByPtctl();
  for (const n of ['PTC_NATS_URL', 'PTC_NATS_CREDS', 'PTC_TEMPORAL_ADDRESS', 'PTC_TEMPORAL_NAMESPACE']) assert.ok(names.has(n), n);
});

void test('docker-compose.yml, its local override and the Dockerfile pass every check', () => {
  assert.deepEqual(checkBaseFile(base), []);
  assert.deepEqual(checkLocalOverride(override, baseFile()), []);
  assert.deepEqual(checkDockerfile(dockerfile), []);
});

void test('docker-compose.yml has what the issue asks for: PostgreSQL-backed Temporal, UI, 3 named NATS nodes with the auth config, worker, agents', () => {
  const { services } = baseFile();
  assert.match(services.temporal?.image ?? '', /^temporalio\/server:/);
  assert.equal(services.temporal?.environment?.DB, 'postgres12');
  assert.equal(services.temporal?.depends_on?.['temporal-schema']?.condition, 'service_completed_successfully');
  assert.match(services['temporal-ui']?.image ?? '', /^temporalio\/ui:/);
  for (const n of ['nats-1', 'nats-2', 'nats-3']) {
    const cmd = services[n]?.command ?? [];
    assert.equal(cmd[cmd.indexOf('--name') + 1], n, `${n} has its own server_name`);
    assert.ok(cmd.includes('-js') && cmd.includes('/etc/ptc/nats-auth.conf'), `${n}: JetStream and ptctl's authorization`);
  }
  assert.deepEqual(services.worker?.command, ['worker']);
  assert.deepEqual(services.agents?.command?.slice(0, 3), ['agent', '--backend', 'sim']);
});

void test('a mutated docker-compose.yml fails the checks', () => {
  const cases: Array<[string | RegExp, string, RegExp]> = [
    ['PTC_NATS_CREDS: /state', 'PTC_NATS_CRED: /state', /sets PTC_NATS_CRED, which ptctl never reads/],
    ['image: nats:2.15.1-alpine', 'image: nats:latest', /nats:latest is not pinned/],
    ['image: postgres:16.9-bookworm', 'image: postgres:16', /postgres:16 is not pinned/],
    ['image: temporalio/ui:2.49.1', 'image: temporalio/ui', /temporalio\/ui is not pinned/],
    ['command: ["worker"]', 'command: ["wroker"]', /wroker is not a ptctl command/],
    ['"--heartbeat", "5000"]', '"--heart-beat", "5000"]', /--heart-beat is not an option of `ptctl agent`/],
    ['test: ["CMD", "ptctl", "hosts", "--json"]', 'test: ["CMD", "ptctl", "host", "--json"]', /host is not a ptctl command/],
    ['      temporal-create-namespace:\n        condition', '      temporal-namespace:\n        condition', /depends on temporal-namespace, which is not a service/],
    [/(  nats-3:[\s\S]*?)    healthcheck:\n(      .*\n){4}/, '$1', /waits for nats-3 to be healthy, but nats-3 has no health check/],
    ['volumes:\n  postgresql:\n', 'networks:\n  ptc: {}\nvolumes:\n  postgresql:\n', /networks/],
    ['  ptc-hosts:\n', '', /volume ptc-hosts is not declared/],
    ['    image: ptctl:0.1.0\n    depends_on:\n      worker', '    image: ptctl:0.1.0\n    network_mode: bridge\n    depends_on:\n      worker', /network_mode/],
  ];
  for (const [from, to, expected] of cases) {
    const problems = checkBaseFile(mutate(base, from, to));
    assert.ok(problems.some((p) => expected.test(p)), `${String(from)} → ${to}: expected ${String(expected)}, got ${JSON.stringify(problems)}`);
  }
});

void test('a mutated local override fails the checks', () => {
  const cases: Array<[string | RegExp, string, RegExp]> = [
    [/(  nats-2:\n    image: .*\n)    network_mode: host\n/, '$1', /nats-2: the local override must set network_mode: host/],
    [/(  nats-3:\n    image: )ptctl-local\/nats:[^\n]+/, '$1nats:2.15.1-alpine', /nats-3: the local override must use an image built here/],
    [/  agents:\n[\s\S]*$/, '', /agents: not in the local override/],
    ['PTC_TEMPORAL_ADDRESS: 127', 'PTC_TEMPORAL_ADRESS: 127', /sets PTC_TEMPORAL_ADRESS, which ptctl never reads/],
    ['  worker:\n', '  wroker:\n', /wroker: in the local override but not in docker-compose.yml/],
  ];
  for (const [from, to, expected] of cases) {
    const problems = checkLocalOverride(mutate(override, from, to), baseFile());
    assert.ok(problems.some((p) => expected.test(p)), `${String(from)} → ${to}: expected ${String(expected)}, got ${JSON.stringify(problems)}`);
  }
});

void test('a mutated Dockerfile fails the checks', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['ENTRYPOINT ["ptctl"]', 'ENTRYPOINT ["node"]', /ENTRYPOINT must be \["ptctl"\]/],
    ['CMD ["--help"]', 'CMD ["hepl"]', /hepl is not a ptctl command/],
    ['USER 10001:10001', 'USER root', /unprivileged user 10001/],
    ['COPY policy policy', 'COPY policies policies', /COPY policies: no such file or folder/],
    ['COPY observability observability\n', '', /does not COPY observability\/, which tsconfig.json compiles/],
  ];
  for (const [from, to, expected] of cases) {
    const problems = checkDockerfile(mutate(dockerfile, from, to));
    assert.ok(problems.some((p) => expected.test(p)), `${from} → ${to}: expected ${String(expected)}, got ${JSON.stringify(problems)}`);
  }
});

/** A shallow stand-in for docker-compose's merge (the runner uses `docker-compose config`): override keys win, env merges, volumes by target. */
function merged(overrideText = override): ComposeFile {
  // docker-compose interpolates the runner's PTC_LOCAL_* settings.
  const interpolated = overrideText.replace(/\$\{(PTC_LOCAL_[A-Z0-9_]+)\}/g, (_, name: string) => (name === 'PTC_LOCAL_DIR' ? '/tmp/run' : '4000'));
  const o = parse(interpolated) as { services: Record<string, Partial<ComposeFile['services'][string]>> };
  const out: ComposeFile = { services: {} };
  for (const [name, s] of Object.entries(baseFile().services)) {
    const over = o.services[name] ?? {};
    const target = (v: string): string => v.split(':')[1] ?? v;
    const volumes = [...(s.volumes ?? []).filter((v) => !(over.volumes ?? []).some((ov) => target(ov) === target(v))), ...(over.volumes ?? [])];
    out.services[name] = { ...s, ...over, environment: { ...s.environment, ...over.environment }, volumes };
  }
  return out;
}

void test('the local profile drops the PostgreSQL-only services and every dependency on them, and keeps host networking', () => {
  const profile = localProfile(merged());
  for (const d of LOCAL_DROPPED) assert.equal(profile.services[d], undefined, d);
  for (const [name, s] of Object.entries(profile.services)) {
    assert.equal(s.network_mode, 'host', name);
    assert.equal(s.ports, undefined, name);
    assert.equal(s.build, undefined, name);
    for (const dep of Object.keys(s.depends_on ?? {})) assert.ok(profile.services[dep], `${name} depends on ${dep}, which the profile runs`);
  }
  assert.equal(profile.services.worker?.depends_on?.temporal?.condition, 'service_healthy');
  assert.equal(profile.services.temporal?.depends_on, undefined);
});

void test('the local profile refuses a service without host networking, with a registry image or a named volume', () => {
  assert.throws(() => localProfile(merged(mutate(override, /(  nats-2:\n    image: .*\n)    network_mode: host\n/, '$1'))), /nats-2 would not use host networking/);
  assert.throws(() => localProfile(merged(mutate(override, /(  nats-3:\n    image: )ptctl-local\/nats:[^\n]+/, '$1nats:2.15.1-alpine'))), /nats-3 uses nats:2.15.1-alpine, which is not built here/);
  assert.throws(() => localProfile(merged(mutate(override, '      - ${PTC_LOCAL_DIR}/hosts:/state/hosts\n', ''))), /agents mounts named volumes \(ptc-hosts:\/state\/hosts\)/);
});
