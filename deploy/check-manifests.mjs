// Parses every YAML file under deploy/ (all documents of each) and checks the wiring that
// docs/deploy.md relies on. Run by deploy/check.sh; uses the `yaml` package that e2e/ installs.
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const deploy = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(deploy, '../e2e/package.json'));
const YAML = require('yaml');

const problems = [];
const expect = (condition, message) => { if (!condition) problems.push(message); };

function yamlFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'secrets' ? [] : yamlFiles(path);
    return /\.ya?ml$/.test(name) ? [path] : [];
  });
}

const documents = {};
for (const path of yamlFiles(deploy)) {
  const name = relative(deploy, path);
  const parsed = YAML.parseAllDocuments(readFileSync(path, 'utf8'), { strict: true, uniqueKeys: true, merge: true });
  for (const doc of parsed) {
    for (const error of [...doc.errors, ...doc.warnings]) problems.push(`${name}: ${error.message}`);
  }
  documents[name] = parsed.map((doc) => doc.toJS({ maxAliasCount: 100 }));
  console.log(`parsed ${name} (${parsed.length} document${parsed.length === 1 ? '' : 's'})`);
}

// docker-compose.yml: two gateway replicas behind a proxy, on PostgreSQL 15.
const compose = documents['docker-compose.yml']?.[0] ?? {};
const services = compose.services ?? {};
const gateways = Object.entries(services).filter(([, s]) => s.image === 'paygate:latest' && !s.command);
expect(gateways.length === 2, `compose: expected 2 gateway replicas, found ${gateways.length}`);
expect(/^postgres:15/.test(services.postgres?.image ?? ''), 'compose: postgres:15 service');
for (const [name, service] of gateways) {
  expect(String(service.environment?.PAYGATE__DATABASE_URL ?? '').startsWith('postgres://'), `compose: ${name} uses PostgreSQL`);
  expect(service.depends_on?.migrate?.condition === 'service_completed_successfully', `compose: ${name} waits for migrate`);
}
const caddyfile = readFileSync(join(deploy, 'Caddyfile'), 'utf8');
for (const [name] of gateways) expect(caddyfile.includes(`${name}:8080`), `Caddyfile: proxies to ${name}`);
expect(caddyfile.includes('health_uri /readyz'), 'Caddyfile: health checks /readyz');

// k8s: Deployment probes, Secret references that exist, a PDB that selects the pods.
const k8s = Object.entries(documents).filter(([name]) => name.startsWith('k8s/')).flatMap(([, docs]) => docs);
const ofKind = (kind) => k8s.filter((d) => d?.kind === kind);
const [deployment] = ofKind('Deployment');
expect(deployment, 'k8s: a Deployment');
const podLabels = deployment?.spec?.template?.metadata?.labels ?? {};
const container = deployment?.spec?.template?.spec?.containers?.[0] ?? {};
expect(container.readinessProbe?.httpGet?.path === '/readyz', 'k8s: readiness probe on /readyz');
expect(container.livenessProbe?.httpGet?.path === '/healthz', 'k8s: liveness probe on /healthz');
expect(deployment?.spec?.template?.spec?.securityContext?.runAsNonRoot === true, 'k8s: runs as non-root');
const secretNames = new Set(ofKind('Secret').map((s) => s.metadata.name));
const configMaps = new Set(ofKind('ConfigMap').map((c) => c.metadata.name));
for (const volume of deployment?.spec?.template?.spec?.volumes ?? []) {
  if (volume.secret) expect(secretNames.has(volume.secret.secretName), `k8s: Secret ${volume.secret.secretName} is described`);
  if (volume.configMap) expect(configMaps.has(volume.configMap.name), `k8s: ConfigMap ${volume.configMap.name} exists`);
}
for (const env of container.env ?? []) {
  const ref = env.valueFrom?.secretKeyRef;
  if (ref) expect(secretNames.has(ref.name), `k8s: Secret ${ref.name} (env ${env.name}) is described`);
}
const selects = (selector) => Object.entries(selector ?? {}).every(([k, v]) => podLabels[k] === v);
const [pdb] = ofKind('PodDisruptionBudget');
expect(pdb && selects(pdb.spec.selector.matchLabels), 'k8s: PodDisruptionBudget selects the pods');
const [service] = ofKind('Service');
expect(service && selects(service.spec.selector), 'k8s: Service selects the pods');

// Every secret file production.toml names is in the k8s Secret and the systemd credentials.
const production = readFileSync(join(deploy, 'config/production.toml'), 'utf8');
const secretFiles = [...production.matchAll(/"\/run\/secrets\/paygate\/([^"]+)"/g)].map((m) => m[1]);
const providerKeys = ofKind('Secret').find((s) => s.metadata.name === 'paygate-provider-keys');
const unit = readFileSync(join(deploy, 'systemd/paygate.service'), 'utf8');
for (const file of secretFiles) {
  expect(Object.hasOwn(providerKeys?.stringData ?? {}, file), `k8s: Secret paygate-provider-keys has ${file}`);
  expect(unit.includes(`LoadCredential=${file}:`), `systemd: LoadCredential for ${file}`);
}
expect(secretFiles.length >= 7, `production.toml: expected 7 secret files, found ${secretFiles.length}`);

// Dockerfile (no engine here to build it): multi-stage, non-root, health-checked, the right binary.
const dockerfile = readFileSync(join(deploy, 'Dockerfile'), 'utf8');
expect((dockerfile.match(/^FROM /gm) ?? []).length >= 2, 'Dockerfile: multi-stage');
expect(/^USER 10001/m.test(dockerfile), 'Dockerfile: runs as uid 10001');
expect(/^HEALTHCHECK .*\n?.*\/healthz/m.test(dockerfile), 'Dockerfile: HEALTHCHECK on /healthz');
expect(dockerfile.includes('-p paygate-gateway') && dockerfile.includes('target/release/paygate'), 'Dockerfile: builds the paygate binary');
expect(deployment?.spec?.template?.spec?.containers?.[0]?.securityContext?.runAsUser === undefined
  && deployment?.spec?.template?.spec?.securityContext?.runAsUser === 10001, 'k8s: pod runs as the image user 10001');

// check.sh starts the binary with the ConfigMap's config too, so it cannot drift into invalid.
const configMapToml = ofKind('ConfigMap').find((c) => c.metadata.name === 'paygate-config')?.data?.['paygate.toml'];
expect(configMapToml, 'k8s: ConfigMap paygate-config has paygate.toml');
if (process.env.CONFIGMAP_TOML_OUT && configMapToml) writeFileSync(process.env.CONFIGMAP_TOML_OUT, configMapToml);

if (problems.length > 0) {
  for (const problem of problems) console.error(`problem: ${problem}`);
  process.exit(1);
}
console.log(`${Object.keys(documents).length} YAML files parse; compose, k8s and systemd wiring agree`);
