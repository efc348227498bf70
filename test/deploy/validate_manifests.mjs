// node validate_manifests.mjs MANIFEST_DIR KUSTOMIZED_YAML SCRATCH_DIR
//
// Validates deploy/kubernetes offline: the files one by one and their `kubectl kustomize`
// build (KUSTOMIZED_YAML), each document against Kubernetes v1.33.0, whose OpenAPI
// schemas kubernetes-models 4.5.1 carries (pinned by package-lock.json):
//
//  1. Schema, strictly. The package's validator (Ajv compiled from the OpenAPI schema)
//     checks required fields, types, enums and formats, but lets unknown fields through,
//     as the API server does. So every document is also compiled by TypeScript against
//     the package's interfaces, generated from the same schema: an object literal may
//     only name known properties, so a misspelled `mountPropogation` fails here, as with
//     `kubectl apply --validate=strict`, instead of being dropped by the cluster.
//  2. Policy: what issue 12 asks of the agent and no schema can say (policy()).
//  3. Self-test, once the manifests pass: broken copies of the DaemonSet must be refused
//     by step 1, so that a validator which silently stopped checking (a type resolving to
//     `any`, an import that no longer resolves) fails the test instead of passing it.
//
// Writes SCRATCH_DIR/plugin.json, the ConfigMap's nsproxy entry from the kustomize build,
// for check_manifests.sh to give to `nsproxyctl cni install`.
import { mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { parseAllDocuments } from "yaml";

const [manifestDir, kustomizedFile, scratch] = process.argv.slice(2);
if (!scratch) {
  console.error("usage: validate_manifests.mjs MANIFEST_DIR KUSTOMIZED_YAML SCRATCH_DIR");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const K8S = "v1.33.0";
const MODELS = "4.5.1";
// kubernetes-models also keeps API versions that Kubernetes no longer serves (apps/v1beta2,
// extensions/v1beta1): the kinds used here and the version a v1.33 cluster serves them at.
const SERVED = { Namespace: "v1", ServiceAccount: "v1", ConfigMap: "v1", DaemonSet: "apps/v1" };

const failures = [];
const fail = (msg) => failures.push(msg);
function finish(summary) {
  if (failures.length) {
    for (const f of failures) console.error(`FAIL: ${f}`);
    process.exit(1);
  }
  if (summary) console.log(summary);
}

const pkg = join(here, "node_modules/kubernetes-models/package.json");
const models = JSON.parse(readFileSync(pkg, "utf8")).version;
if (models !== MODELS) {
  fail(
    `kubernetes-models ${models} installed, ${MODELS} expected: run scripts/install-npm-deps.sh`,
  );
  finish();
}

// YAML 1.1, as Kubernetes reads it (`yes` is a boolean there); duplicate keys refused.
function load(file, label) {
  const docs = [];
  const text = readFileSync(file, "utf8");
  for (const [i, d] of parseAllDocuments(text, { version: "1.1" }).entries()) {
    if (d.errors.length)
      fail(`${label} document ${i}: ${d.errors.map((e) => e.message).join("; ")}`);
    const obj = d.toJS();
    if (obj !== null && obj !== undefined) docs.push({ label, obj });
  }
  return docs;
}

// kubernetes-models/<apiVersion>/<Kind>, e.g. "apps/v1/DaemonSet"; null when not served.
async function model(obj) {
  if (SERVED[obj.kind] !== obj.apiVersion) return null;
  const spec = `kubernetes-models/${obj.apiVersion}/${obj.kind}`;
  return { cls: (await import(spec))[obj.kind], spec };
}

// Ajv: the errors of one document, "" when it is valid.
async function ajvErrors(obj) {
  const m = await model(obj);
  if (!m) {
    const known = Object.entries(SERVED).map(([k, v]) => `${v} ${k}`);
    return `${obj.apiVersion} ${obj.kind} is not one of ${known.join(", ")} (Kubernetes ${K8S})`;
  }
  try {
    new m.cls(obj).validate();
    return "";
  } catch (e) {
    return e.message;
  }
}

// TypeScript: one .ts file per document, all compiled in one program. Returns a map from
// each label to its errors.
function typeErrors(docs, dir) {
  mkdirSync(dir, { recursive: true });
  symlinkSync(join(here, "node_modules"), join(dir, "node_modules"));
  const files = new Map(); // path -> label
  for (const { label, obj } of docs) {
    if (SERVED[obj.kind] !== obj.apiVersion) continue; // ajvErrors() reports it
    const name = `${String(files.size).padStart(2, "0")}-${label.replace(/[^\w.-]+/g, "_")}.ts`;
    const spec = `kubernetes-models/${obj.apiVersion}/${obj.kind}`;
    writeFileSync(
      join(dir, name),
      `// ${label}\nimport type { I${obj.kind} } from "${spec}";\n` +
        `export const manifest: I${obj.kind} = ${JSON.stringify(obj, null, 2)};\n`,
    );
    files.set(join(dir, name), label);
  }
  const program = ts.createProgram([...files.keys()], {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    lib: ["lib.es2022.d.ts"],
    types: [],
    module: ts.ModuleKind.Node16,
    moduleResolution: ts.ModuleResolutionKind.Node16,
    skipLibCheck: true,
  });
  const errors = new Map(docs.map((d) => [d.label, []]));
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const text = ts.flattenDiagnosticMessageText(d.messageText, " ");
    const label = files.get(d.file?.fileName);
    if (!label) {
      fail(`typescript: ${text}`); // a broken setup: the checks would mean nothing
      continue;
    }
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    errors.get(label).push(`${basename(d.file.fileName)}:${line + 1}: ${text}`);
  }
  return errors;
}

// Step 1 for a set of documents: a map from each label to its errors (none: valid).
async function schemaErrors(docs, dir) {
  const errors = typeErrors(docs, dir);
  for (const { label, obj } of docs) {
    const err = await ajvErrors(obj);
    if (err) errors.get(label).unshift(err);
  }
  return errors;
}

// Step 2: issue 12's points, and the entrypoint's contract (deploy/container/nsproxy-agent)
// as the agent test runs it (test/integration/agent_podman_test.cc: host network, these
// four capabilities, no new privileges, read-only root, the node's directories mounted).
function policy(objs, where) {
  const find = (kind) => objs.find((d) => d.kind === kind);
  const [ns, sa, cm, ds] = ["Namespace", "ServiceAccount", "ConfigMap", "DaemonSet"].map(find);
  if (!ns || !sa || !cm || !ds) {
    return fail(`${where}: a Namespace, ServiceAccount, ConfigMap and DaemonSet are expected`);
  }
  const expect = (cond, msg) => cond || fail(`${where}: ${msg}`);
  for (const d of objs) {
    if (d.kind !== "Namespace") {
      expect(d.metadata?.namespace === ns.metadata.name, `${d.kind} is not in ${ns.metadata.name}`);
    }
  }
  const psa = ns.metadata.labels?.["pod-security.kubernetes.io/enforce"];
  expect(psa === "privileged", "the namespace must enforce Pod Security `privileged`");
  expect(sa.automountServiceAccountToken === false, "the service account mounts a token");
  let entry = null;
  try {
    entry = JSON.parse(cm.data?.["plugin.json"]);
  } catch (e) {
    expect(false, `ConfigMap plugin.json: ${e.message}`);
  }
  expect(entry?.type === "nsproxy", "ConfigMap plugin.json is not an nsproxy entry");

  const ru = ds.spec.updateStrategy?.rollingUpdate;
  expect(
    ds.spec.updateStrategy?.type === "RollingUpdate" &&
      ru?.maxSurge === 1 &&
      ru?.maxUnavailable === 0,
    "updateStrategy must be RollingUpdate, maxSurge 1, maxUnavailable 0 (the new pod takes over)",
  );
  const selector = Object.entries(ds.spec.selector.matchLabels ?? {});
  const labels = ds.spec.template.metadata?.labels ?? {};
  expect(
    selector.length && selector.every(([k, v]) => labels[k] === v),
    "the selector does not match the pod template's labels",
  );
  const ann = ds.spec.template.metadata?.annotations ?? {};
  expect(
    ann["prometheus.io/scrape"] === "true" &&
      ann["prometheus.io/port"] === "9464" &&
      ann["prometheus.io/path"] === "/metrics",
    "Prometheus scrape annotations: scrape true, port 9464, path /metrics",
  );

  const pod = ds.spec.template.spec;
  expect(pod.hostNetwork === true, "hostNetwork must be true");
  expect(pod.serviceAccountName === sa.metadata.name, "the pod must use the service account");
  expect(pod.automountServiceAccountToken === false, "the pod mounts a service account token");
  expect(
    pod.priorityClassName === "system-node-critical",
    "priorityClassName system-node-critical",
  );
  expect(
    pod.tolerations?.some((t) => t.operator === "Exists" && !t.key && !t.effect),
    "a toleration of every taint (operator Exists, no key, no effect)",
  );
  expect(pod.terminationGracePeriodSeconds > 30, "the grace period must outlast the 30 s drain");
  expect(pod.containers.length === 1, "one container");
  const c = pod.containers[0];
  expect(
    !c.ports,
    "no container ports: with hostNetwork they are hostPorts, which keep the surge pod off the node",
  );

  const sc = c.securityContext ?? {};
  expect(sc.privileged === false, "securityContext.privileged must be false");
  expect(sc.allowPrivilegeEscalation === false, "allowPrivilegeEscalation must be false");
  expect(sc.readOnlyRootFilesystem === true, "readOnlyRootFilesystem must be true");
  const caps = sc.capabilities ?? {};
  expect(
    JSON.stringify(caps.drop) === '["ALL"]' &&
      JSON.stringify([...(caps.add ?? [])].sort()) ===
        '["CHOWN","NET_ADMIN","NET_BIND_SERVICE","SYS_ADMIN"]',
    `capabilities: drop ALL, add exactly SYS_ADMIN NET_ADMIN NET_BIND_SERVICE CHOWN (got ${JSON.stringify(caps)})`,
  );

  const env = c.env ?? [];
  const hostIp = env.findIndex(
    (v) => v.name === "HOST_IP" && v.valueFrom?.fieldRef?.fieldPath === "status.hostIP",
  );
  const listen = env.findIndex(
    (v) => v.name === "NSPROXY_METRICS_LISTEN" && v.value === "$(HOST_IP):9464",
  );
  expect(
    hostIp >= 0 && listen > hostIp,
    "env HOST_IP from status.hostIP, then NSPROXY_METRICS_LISTEN=$(HOST_IP):9464",
  );
  const probe = (p, path) => p?.httpGet?.path === path && p.httpGet.port === 9464;
  expect(probe(c.readinessProbe, "/readyz"), "readinessProbe: httpGet /readyz on port 9464");
  expect(probe(c.livenessProbe, "/healthz"), "livenessProbe: httpGet /healthz on port 9464");
  const res = c.resources ?? {};
  expect(
    res.requests?.memory && res.requests?.cpu && res.limits?.memory,
    "requests memory and cpu, limits memory",
  );
  expect(!res.limits?.cpu, "no CPU limit (throttling delays every proxied request)");

  // Mounts: each names a volume; the node's directories where the entrypoint expects them.
  const volumes = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
  const mounts = new Map((c.volumeMounts ?? []).map((m) => [m.mountPath, m]));
  for (const m of mounts.values())
    expect(volumes.has(m.name), `mount ${m.mountPath} names no volume`);
  const hostPaths = {
    "/host/opt/cni/bin": "/opt/cni/bin",
    "/host/etc/cni/net.d": "/etc/cni/net.d",
    "/var/run/netns": "/var/run/netns",
    "/run/nsproxy": "/run/nsproxy",
  };
  for (const [at, path] of Object.entries(hostPaths)) {
    const v = volumes.get(mounts.get(at)?.name);
    expect(v?.hostPath?.path === path, `${at} must be a mount of the node's ${path} (hostPath)`);
  }
  expect(
    mounts.get("/var/run/netns")?.mountPropagation === "HostToContainer",
    "/var/run/netns needs mountPropagation HostToContainer (namespaces created after the agent started)",
  );
  // podman --read-only, as the agent test runs it, puts a tmpfs on /tmp.
  expect(
    volumes.get(mounts.get("/tmp")?.name)?.emptyDir,
    "a read-only root needs an emptyDir on /tmp",
  );
  const config = volumes.get(mounts.get("/etc/nsproxy")?.name)?.configMap?.name;
  expect(
    config === cm.metadata.name,
    `/etc/nsproxy (NSPROXY_PLUGIN_CONFIG) must be the ConfigMap ${cm.metadata.name}`,
  );
}

// Step 3: [what, how to break a copy of the DaemonSet].
const netnsMount = (d) =>
  d.spec.template.spec.containers[0].volumeMounts.find((m) => m.mountPath === "/var/run/netns");
const canaries = [
  [
    "misspelled field",
    (d) => Object.assign(netnsMount(d), { mountPropogation: "HostToContainer" }),
  ],
  ["unknown field", (d) => Object.assign(d.spec.template.spec, { hostNetwrok: true })],
  ["wrong type", (d) => Object.assign(d.spec.updateStrategy.rollingUpdate, { maxSurge: [1] })],
  ["missing required field", (d) => delete d.spec.template.spec.containers[0].name],
  [
    "value outside an enum",
    (d) => Object.assign(netnsMount(d), { mountPropagation: "HostToContainr" }),
  ],
  ["API version not served", (d) => Object.assign(d, { apiVersion: "apps/v1beta2" })],
];

// The kustomization must list every other manifest of the directory.
const files = readdirSync(manifestDir)
  .filter((f) => /\.ya?ml$/.test(f) && f !== "kustomization.yaml")
  .sort();
const kustomization = load(join(manifestDir, "kustomization.yaml"), "kustomization.yaml")[0]?.obj;
const listed = [...(kustomization?.resources ?? [])].sort();
if (JSON.stringify(listed) !== JSON.stringify(files)) {
  fail(
    `kustomization.yaml lists ${JSON.stringify(listed)}, the directory holds ${JSON.stringify(files)}`,
  );
}

const fromFiles = files.flatMap((f) => load(join(manifestDir, f), f));
const kustomized = load(kustomizedFile, "kustomized");
for (const d of [...fromFiles, ...kustomized]) d.label += `: ${d.obj.kind} ${d.obj.metadata?.name}`;
if (kustomized.length !== fromFiles.length) {
  fail(`kubectl kustomize gave ${kustomized.length} documents for ${fromFiles.length}`);
}
const all = [...fromFiles, ...kustomized];
for (const [label, errs] of await schemaErrors(all, join(scratch, "ts"))) {
  for (const err of errs) fail(`${label}: ${err}`);
}
for (const [where, docs] of Object.entries({ files: fromFiles, kustomized })) {
  const objs = docs.map((d) => d.obj);
  try {
    policy(objs, where);
  } catch (e) {
    fail(`${where}: the policy check stopped (${e.message}): fix the errors above first`);
  }
}
finish();

const daemonSet = fromFiles.find((d) => d.obj.kind === "DaemonSet").obj;
const broken = canaries.map(([what, mutate]) => {
  const obj = structuredClone(daemonSet);
  mutate(obj);
  return { label: `canary (${what})`, obj };
});
for (const [label, errs] of await schemaErrors(broken, join(scratch, "ts-canaries"))) {
  if (!errs.length) fail(`${label}: the schema check accepted a broken DaemonSet`);
}

const configMap = kustomized.find((d) => d.obj.kind === "ConfigMap").obj;
writeFileSync(join(scratch, "plugin.json"), configMap.data["plugin.json"]);
finish(
  `deploy/kubernetes: ${fromFiles.length + kustomized.length} documents (${files.length} files and their ` +
    `kustomize build) valid against Kubernetes ${K8S}, unknown fields refused; policy holds; ` +
    `${broken.length} broken copies refused`,
);
