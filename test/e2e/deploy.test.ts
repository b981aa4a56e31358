import { existsSync, statSync } from 'node:fs'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { basename, dirname, join, posix, resolve } from 'node:path'
import t from 'tap'
import YAML from 'yaml'
import { loadConfig, parseConfig } from '../../src/config/load-config.js'
import type { Config } from '../../src/config/schema.js'
import { readDockerfile, type Image } from '../helpers/dockerfile.js'
import { VERSION } from '../../src/version.js'
import { CLI, ROOT, run } from '../helpers/spawn.js'

/**
 * The deployment files hold together: every routes.yaml is a config Ficus accepts, and the
 * ports, paths, probes and names that the Dockerfile, docker-compose.yml and the Kubernetes
 * manifests repeat are the ones those configs and the built files have.
 */

const DEPLOY = join(ROOT, 'deploy')
const K8S = join(DEPLOY, 'kubernetes')
const TOKEN = 'deploy-test-token'
const ENV = { FICUS_ADMIN_TOKEN: TOKEN, LEGACY_URL: 'http://legacy.internal:8080' }

interface ComposeService {
  build?: { context: string; dockerfile: string }
  image?: string
  command?: string[]
  environment?: Record<string, string>
  volumes?: string[]
  ports?: string[]
  healthcheck?: { test: string[] }
  depends_on?: Record<string, { condition: string }>
}
interface Compose { services: Record<string, ComposeService>; volumes?: Record<string, unknown> }

interface Probe { httpGet: { path: string; port: string | number } }
interface Container {
  image: string
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[]
  ports: { name: string; containerPort: number }[]
  readinessProbe?: Probe
  livenessProbe?: Probe
  lifecycle?: { preStop?: unknown }
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> }
  securityContext?: { readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean }
  volumeMounts: Mount[]
}
interface Mount { name: string; mountPath: string; subPath?: string; readOnly?: boolean }
interface Volume { name: string; configMap?: { name: string }; emptyDir?: unknown }
interface Manifest {
  apiVersion: string
  kind: string
  metadata: { name: string; labels?: Record<string, string> }
  data?: Record<string, string>
  spec: {
    replicas?: number
    /** A Service's selector is the labels; the others' have matchLabels. */
    selector?: { matchLabels?: Record<string, string> } & Record<string, unknown>
    template?: {
      metadata: { labels: Record<string, string> }
      spec: {
        terminationGracePeriodSeconds: number
        securityContext?: { runAsNonRoot?: boolean; runAsUser?: number }
        containers: Container[]
        volumes: Volume[]
      }
    }
    ports?: { name: string; port: number; targetPort: string | number }[]
    endpoints?: { port: string; path: string }[]
  }
}

const yamlFile = async <T>(path: string): Promise<T> => YAML.parse(await readFile(path, 'utf8')) as T
const contains = (labels: Record<string, string> | undefined, wanted: Record<string, unknown> | undefined): boolean =>
  wanted !== undefined && Object.keys(wanted).length > 0 && Object.entries(wanted).every(([k, v]) => labels?.[k] === v)

/** What the image declares: its config path (the CMD's --config), ports (EXPOSE), … */
async function image(): Promise<Image> {
  return (await readDockerfile()).image
}

async function k8s(): Promise<Map<string, Manifest>> {
  const kustomization = await yamlFile<{ resources: string[] }>(join(K8S, 'kustomization.yaml'))
  const byKind = new Map<string, Manifest>()
  for (const file of kustomization.resources) {
    const m = await yamlFile<Manifest>(join(K8S, file))
    byKind.set(m.kind, m)
  }
  return byKind
}

/** The ConfigMap's routes.yaml, written to a file of its own. */
async function configMapRoutes(dir: string): Promise<string> {
  const cm = (await k8s()).get('ConfigMap')
  const file = join(dir, 'routes.yaml')
  await writeFile(file, cm?.data?.['routes.yaml'] ?? '')
  return file
}

/** `[ip:]host:container` of compose's short port syntax. */
function published(spec: string): { ip: string | undefined; host: number; container: number } {
  const parts = spec.split(':')
  return { ip: parts.length === 3 ? parts[0] : undefined, host: Number(parts.at(-2)), container: Number(parts.at(-1)) }
}

const ports = (c: Config): number[] => [c.listen.port, c.admin.port].sort()

t.test('every routes.yaml of the deployment passes `ficus check` with FICUS_ADMIN_TOKEN, and fails clearly without it', async (t) => {
  const configs = {
    image: join(DEPLOY, 'routes.yaml'),
    compose: join(DEPLOY, 'compose', 'routes.yaml'),
    kubernetes: await configMapRoutes(t.testdir())
  }
  // All at once: each is a CLI start (~1 s).
  const checks = Object.entries(configs).map(([name, file]) => ({
    name,
    ok: run(t, CLI, ['check', file], ENV, { cleanEnv: true }),
    unset: run(t, CLI, ['check', file], { LEGACY_URL: ENV.LEGACY_URL }, { cleanEnv: true }),
    // An empty token is no token (the loader's own reading, without another CLI start).
    empty: loadConfig(file, { ...ENV, FICUS_ADMIN_TOKEN: '' }).then(() => 'loaded', (err: Error) => err.message)
  }))
  for (const { name, ok, unset, empty } of checks) {
    t.equal(await ok.exitCode(), 0, `${name}: valid (${ok.stderr.trim()})`)
    t.match(ok.stdout, /: OK \(\d+ routes?, 2 upstreams\)/)
    t.equal(await unset.exitCode(), 1, `${name}: refused without FICUS_ADMIN_TOKEN`)
    t.match(unset.stderr, /admin\.token: environment variable FICUS_ADMIN_TOKEN is not set/, `${name}: and says which variable`)
    t.match(await empty, /admin\.host: 0\.0\.0\.0 is not a loopback address: set admin\.token/, `${name}: an empty token is refused: the admin port needs one`)
  }
})

/** docker-compose.yml, its three services, the image, and the Ficus config compose mounts where the image reads it. */
async function composeFiles() {
  const img = await image()
  const compose = await yamlFile<Compose>(join(DEPLOY, 'docker-compose.yml'))
  const { ficus, prometheus, grafana } = compose.services
  if (ficus === undefined || prometheus === undefined || grafana === undefined) throw new Error('services ficus, prometheus and grafana are required')
  const mount = (ficus.volumes ?? []).map((v) => v.split(':')).find(([, target]) => target === posix.dirname(img.configPath))
  const configDir = resolve(DEPLOY, mount?.[0] ?? '?')
  const config = async (): Promise<Config> => loadConfig(join(configDir, posix.basename(img.configPath)), ENV)
  return { img, compose, ficus, prometheus, grafana, mount, configDir, config }
}

t.test('docker-compose.yml: ficus is built from this repository, and its admin token is required', async (t) => {
  const { ficus } = await composeFiles()
  t.equal(resolve(DEPLOY, ficus.build?.context ?? '?'), ROOT, 'ficus is built from the repository')
  t.ok(existsSync(join(ROOT, ficus.build?.dockerfile ?? '?')), 'with its Dockerfile')
  t.match(ficus.environment?.FICUS_ADMIN_TOKEN, /^\$\{FICUS_ADMIN_TOKEN:\?.+\}$/, 'the token is required, with a message, and has no default')
})

t.test('docker-compose.yml: every bind mount\'s source is in the repository, every named volume declared', async (t) => {
  const { compose } = await composeFiles()
  for (const [name, service] of Object.entries(compose.services)) {
    for (const v of service.volumes ?? []) {
      const [source] = v.split(':') as [string]
      if (source.startsWith('.') || source.startsWith('/')) t.ok(existsSync(resolve(DEPLOY, source)), `${name}: ${source} exists`)
      else t.ok(compose.volumes !== undefined && source in compose.volumes, `${name}: the named volume ${source} is declared`)
    }
  }
})

t.test('docker-compose.yml: Ficus\'s config is a directory mounted where the image reads it, its state on a volume', async (t) => {
  const { img, ficus, mount, configDir, config } = await composeFiles()
  t.ok(mount, `a mount at ${posix.dirname(img.configPath)}`)
  t.ok(existsSync(configDir) && statSync(configDir).isDirectory(), 'a directory (Ficus watches it), not a single file')
  const c = await config()
  t.ok(c.state !== undefined && (ficus.volumes ?? []).some((v) => v.split(':')[1] === posix.dirname(c.state as string)), 'the state directory is a volume')
})

t.test('docker-compose.yml: it publishes the config\'s two ports, which the image EXPOSEs, the admin port on loopback only', async (t) => {
  const { img, ficus, config } = await composeFiles()
  const c = await config()
  const ficusPorts = (ficus.ports ?? []).map(published)
  t.same(ficusPorts.map((p) => p.container).sort(), ports(c), 'compose publishes the config\'s two ports')
  t.same(ports(c), [...img.expose].sort(), 'which the image EXPOSEs')
  t.equal(ficusPorts.find((p) => p.container === c.admin.port)?.ip, '127.0.0.1', 'the admin port on the host\'s loopback only')
})

t.test('docker-compose.yml: each upstream is a healthy compose service of the same image, on the port Ficus calls', async (t) => {
  const { compose, ficus, config } = await composeFiles()
  // The upstreams are compose services, on the port their command listens on, from a built file.
  for (const [name, u] of Object.entries((await config()).upstreams)) {
    const url = new URL(u.origin)
    const service = compose.services[url.hostname]
    t.ok(service, `upstream ${name}: ${url.hostname} is a compose service`)
    const command = service?.command ?? []
    t.equal(command[0], 'node')
    t.ok(existsSync(join(ROOT, command[1] ?? '?')), `${url.hostname} runs ${command[1]}, which the build makes`)
    t.equal(command[command.indexOf('--port') + 1], url.port, `${url.hostname} listens on the port Ficus calls`)
    t.equal(command[command.indexOf('--host') + 1], '0.0.0.0', `${url.hostname} listens beyond its container`)
    t.match(service?.healthcheck?.test.join(' '), new RegExp(`127\\.0\\.0\\.1:${url.port}/`), `${url.hostname}'s health check asks that port`)
    t.equal(ficus.depends_on?.[url.hostname]?.condition, 'service_healthy')
    t.equal(service?.image, ficus.image, 'the same image as Ficus')
  }
})

t.test('docker-compose.yml: Prometheus, pinned, reads the repository\'s config, which scrapes Ficus\'s admin port, with its rules beside it', async (t) => {
  const { prometheus, config } = await composeFiles()
  const c = await config()
  // Prometheus reads the repository's prometheus.yml, which scrapes Ficus's admin port.
  const promMount = (prometheus.volumes ?? []).map((v) => v.split(':')).find(([, target]) => target === '/etc/prometheus')
  const configFlag = (prometheus.command ?? []).find((x) => x.startsWith('--config.file='))?.split('=')[1] ?? '/etc/prometheus/prometheus.yml'
  const promFile = join(resolve(DEPLOY, promMount?.[0] ?? '?'), posix.relative('/etc/prometheus', configFlag))
  t.ok(existsSync(promFile), `Prometheus's config ${configFlag} is in the repository`)
  const prom = existsSync(promFile) ? await yamlFile<{ rule_files?: string[]; scrape_configs: { metrics_path?: string; static_configs: { targets: string[] }[] }[] }>(promFile) : { scrape_configs: [] }
  const targets = prom.scrape_configs.flatMap((x) => x.static_configs.flatMap((sc) => sc.targets.map((target) => ({ target, path: x.metrics_path ?? '/metrics' }))))
  t.ok(targets.some((x) => x.target === `ficus:${c.admin.port}` && x.path === '/metrics'), `it scrapes ficus:${c.admin.port}/metrics`)
  for (const rules of prom.rule_files ?? []) t.ok(existsSync(join(dirname(promFile), rules)), `its rule file ${rules} is beside it`)
  t.match(prometheus.image, /^prom\/prometheus:v\d+\.\d+\.\d+$/, 'Prometheus pinned to a release')
})

t.test('docker-compose.yml: Grafana, pinned, is provisioned with Prometheus as its data source and the dashboards compose mounts', async (t) => {
  const { prometheus, grafana } = await composeFiles()
  t.match(grafana.image, /^grafana\/grafana:11\.\d+\.\d+$/, 'Grafana pinned to an 11.x release')
  // Grafana's provisioning (mounted from the repository) finds Prometheus and the dashboards where compose puts them.
  const grafanaMount = (target: string): string => resolve(DEPLOY, (grafana.volumes ?? []).map((v) => v.split(':')).find(([, to]) => to === target)?.[0] ?? '?')
  const provisioning = grafanaMount('/etc/grafana/provisioning')
  const provisioned = async <T>(kind: string): Promise<T[]> => Promise.all((await readdir(join(provisioning, kind))).map((f) => yamlFile<T>(join(provisioning, kind, f))))
  const sources = (await provisioned<{ datasources: { type: string; url: string }[] }>('datasources')).flatMap((d) => d.datasources)
  const promUrl = new URL(sources.find((d) => d.type === 'prometheus')?.url ?? 'none:')
  t.equal(promUrl.hostname, 'prometheus', 'the data source is the compose service prometheus')
  t.ok((prometheus.ports ?? []).map(published).some((p) => p.container === Number(promUrl.port)), 'on the port Prometheus listens on in its container')
  const paths = (await provisioned<{ providers: { options: { path: string } }[] }>('dashboards')).flatMap((d) => d.providers.map((p) => p.options.path))
  t.ok(paths.length > 0 && paths.every((p) => existsSync(join(grafanaMount(p), 'ficus.json'))), `the dashboards provider reads ${paths.join(', ')}, where compose mounts grafana/dashboards`)
})

/** The manifests, the ConfigMap's config, the pod template and its Ficus container. */
async function kubernetesFiles() {
  const img = await image()
  const m = await k8s()
  const [cm, deploy, svc, sm] = ['ConfigMap', 'Deployment', 'Service', 'ServiceMonitor'].map((kind) => m.get(kind))
  if (cm === undefined || deploy?.spec.template === undefined || svc === undefined || sm === undefined) throw new Error('a ConfigMap, a Deployment, a Service and a ServiceMonitor are required')
  const config = parseConfig(cm.data?.['routes.yaml'] ?? '', 'configmap.yaml routes.yaml', ENV)
  const pod = deploy.spec.template
  const container = pod.spec.containers[0] as Container
  const port = (name: string): number | undefined => container.ports.find((p) => p.name === name)?.containerPort
  return { img, m, cm, deploy, svc, sm, config, pod, container, podLabels: pod.metadata.labels, port }
}

t.test('kubernetes: kustomization.yaml lists every manifest', async (t) => {
  const kustomization = await yamlFile<{ resources: string[] }>(join(K8S, 'kustomization.yaml'))
  t.same([...kustomization.resources].sort(), (await readdir(K8S)).filter((f) => f !== 'kustomization.yaml').sort(), 'kustomization.yaml lists every manifest')
})

t.test('kubernetes: the Deployment runs two replicas or more of this version\'s image and selects its pods', async (t) => {
  const { deploy, container, podLabels } = await kubernetesFiles()
  t.ok((deploy.spec.replicas ?? 1) >= 2, 'two replicas at least')
  t.ok(contains(podLabels, deploy.spec.selector?.matchLabels), 'the Deployment selects its pods')
  t.match(container.image, new RegExp(`/ficus:${VERSION.replace(/\./g, '\\.')}$`), 'the image tag is this version')
  t.match(container.image, /OWNER/, 'and its registry a placeholder to replace')
})

t.test('kubernetes: the container ports are the config\'s and the image\'s; readiness and liveness probe the admin port', async (t) => {
  const { img, config, container, port } = await kubernetesFiles()
  t.equal(port('traffic'), config.listen.port, 'containerPort traffic = listen.port')
  t.equal(port('admin'), config.admin.port, 'containerPort admin = admin.port')
  t.same([port('traffic'), port('admin')].sort(), [...img.expose].sort(), 'the ports the image EXPOSEs')
  t.same(container.readinessProbe?.httpGet, { path: '/readyz', port: 'admin' }, 'readiness: /readyz on the admin port')
  t.same(container.livenessProbe?.httpGet, { path: '/healthz', port: 'admin' }, 'liveness: /healthz on the admin port')
})

t.test('kubernetes: the grace period outlasts the drain delay and shutdown timeout, with no preStop', async (t) => {
  const { config, pod, container } = await kubernetesFiles()
  const grace = pod.spec.terminationGracePeriodSeconds
  t.ok(grace > (config.shutdown.drainDelayMs + config.shutdown.timeoutMs) / 1000, `terminationGracePeriodSeconds ${grace} > drainDelay + shutdown.timeout (${config.shutdown.drainDelayMs / 1000} + ${config.shutdown.timeoutMs / 1000} s)`)
  t.equal(container.lifecycle?.preStop, undefined, 'no preStop: the drain delay does its work (see deployment.yaml)')
})

t.test('kubernetes: the pod runs as a non-root user on a read-only filesystem, with resources, its admin token from a Secret', async (t) => {
  const { pod, container } = await kubernetesFiles()
  const token = container.env?.find((e) => e.name === 'FICUS_ADMIN_TOKEN')
  t.ok(token?.valueFrom?.secretKeyRef !== undefined && token.value === undefined, 'the admin token comes from a Secret')
  t.equal(pod.spec.securityContext?.runAsNonRoot, true)
  t.ok(pod.spec.securityContext?.runAsUser !== undefined && pod.spec.securityContext.runAsUser !== 0, 'a non-root uid')
  t.equal(container.securityContext?.readOnlyRootFilesystem, true)
  for (const kind of ['requests', 'limits'] as const) t.ok(container.resources?.[kind]?.cpu !== undefined && container.resources[kind]?.memory !== undefined, `cpu and memory ${kind}`)
})

t.test('kubernetes: the ConfigMap is mounted as a directory where the image reads its config, the state on a writable emptyDir', async (t) => {
  const { img, cm, config, pod, container } = await kubernetesFiles()
  const volume = (path: string): { mount: Mount | undefined; source: Volume | undefined } => {
    const mount = container.volumeMounts.find((v) => v.mountPath === path)
    return { mount, source: pod.spec.volumes.find((v) => v.name === mount?.name) }
  }
  const routes = volume(posix.dirname(img.configPath))
  t.equal(routes.source?.configMap?.name, cm.metadata.name, `the ConfigMap is mounted at ${posix.dirname(img.configPath)}`)
  t.equal(routes.mount?.subPath, undefined, 'as a directory (a subPath mount never sees an update)')
  t.ok(cm.data?.[posix.basename(img.configPath)] !== undefined, `the ConfigMap's key is ${basename(img.configPath)}`)
  const state = volume(posix.dirname(config.state ?? '?'))
  t.ok(state.source?.emptyDir !== undefined && state.mount?.readOnly !== true, 'the state directory is a writable emptyDir')
})

t.test('kubernetes: the Service routes to both ports, the ServiceMonitor scrapes its admin port, a PodDisruptionBudget selects the pods', async (t) => {
  const { m, svc, sm, podLabels, port } = await kubernetesFiles()
  t.ok(contains(podLabels, svc.spec.selector), 'the Service selects the pods')
  const svcPorts = svc.spec.ports ?? []
  const targets = (p: { targetPort: string | number }, name: string): boolean => p.targetPort === name || p.targetPort === port(name)
  t.ok(svcPorts.some((p) => targets(p, 'traffic')), 'the Service has the traffic port')
  const admin = svcPorts.find((p) => p.name === 'admin')
  t.ok(admin !== undefined && targets(admin, 'admin'), 'and a port named admin on the admin port')
  t.equal(sm.apiVersion, 'monitoring.coreos.com/v1')
  t.ok(contains(svc.metadata.labels, sm.spec.selector?.matchLabels), 'the ServiceMonitor selects the Service')
  t.same(sm.spec.endpoints?.map((e) => [e.port, e.path]), [['admin', '/metrics']], 'and scrapes /metrics on its admin port')
  const pdb = m.get('PodDisruptionBudget')
  if (pdb !== undefined) t.ok(contains(podLabels, pdb.spec.selector?.matchLabels), 'the PodDisruptionBudget selects the pods')
})
