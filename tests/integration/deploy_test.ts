// What the container and the cluster run, run here: docker and kubectl are
// not on this machine, so the Dockerfile's own ENTRYPOINT, CMD and HEALTHCHECK
// lines are run as they stand (its paths mapped onto the repository, loopback
// for 0.0.0.0, free ports), and deploy/kubernetes.yaml is parsed and checked
// against the program's options, and so is the systemd unit of
// docs/operations.md and the Prometheus scrape config of docs/observing.md.

import assert from "node:assert/strict";
import { parse, parseAllDocuments } from "yaml";
import { parseCommandLine } from "../../cli/options.ts";
import { adminOption, healthUrl } from "../../deploy/healthcheck.ts";
import {
  fetchBytes,
  freePort,
  freePortRange,
  makePoems,
  ROOT,
  serverCommand,
  startServer,
} from "../helpers.ts";

const dockerfile = await Deno.readTextFile(`${ROOT}/Dockerfile`);

/** A JSON-array (exec form) instruction of the Dockerfile's last stage. */
function execForm(pattern: RegExp): string[] {
  const lastStage = dockerfile.slice(dockerfile.lastIndexOf("\nFROM "));
  const match = pattern.exec(lastStage);
  assert.ok(match, `${pattern} in the Dockerfile`);
  return JSON.parse(match[1]);
}

Deno.test({
  name: "deploy: the Dockerfile's ENTRYPOINT, CMD and HEALTHCHECK serve, report health, and drain",
  // The image is Linux; its Unix paths and signals mean nothing on Windows.
  ignore: Deno.build.os === "windows",
}, async () => {
  const firstPort = freePortRange(4);
  const adminPort = freePort();
  const here = (args: string[]) =>
    args.map((arg) =>
      arg.replace("/bin/deno", Deno.execPath())
        .replaceAll("/app/", `${ROOT}/`)
        .replaceAll("0.0.0.0", "127.0.0.1")
        .replace(/\b10000\b/, String(firstPort))
        .replace(/\b9100\b/, String(adminPort))
    );
  const entrypoint = here(execForm(/^ENTRYPOINT (\[.*\])$/m));
  const cmd = here(execForm(/^CMD (\[.*\])$/m));
  // The probe as written: no port of its own; only its paths mapped, and the
  // server's pid for PID 1.
  const healthcheckLine = execForm(/^HEALTHCHECK [^\n]*\\\n\s*CMD (\[.*\])$/m);
  // The image's permissions: exactly these, no more.
  assert.deepEqual(entrypoint.filter((a) => a.startsWith("--allow")), [
    // The workers' code too, for a CMD with --workers.
    `--allow-read=${ROOT}/poems,/poems,${ROOT}/lib,${ROOT}/deno.json`,
    "--allow-net=127.0.0.1",
  ]);
  const poems = [...Deno.readDirSync(`${ROOT}/poems`)].length;
  // With --workers 2: the image's permissions must let the workers start.
  const server = await startServer([...cmd, "--workers", "2"], {
    command: entrypoint,
    listeners: poems,
  });
  const probe = () => runProbe(healthcheckLine, server.process.pid);
  try {
    assert.equal(server.addresses[0].port, firstPort);
    const first = [...Deno.readDirSync(`${ROOT}/poems`)].map((e) => e.name).sort()[0];
    assert.deepEqual(
      await fetchBytes(server.addresses[0]),
      await Deno.readFile(`${ROOT}/poems/${first}`),
    );
    assert.equal((await probe()).code, 0, "healthy while serving");
    // JSON logs, one object per line, for the cluster's log collector.
    const lines = (await server.waitForLines(/"outcome":"completed"/, 1)).trim().split("\n");
    for (const line of lines) JSON.parse(line);
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
  assert.equal((await probe()).code, 1, "unhealthy once gone");
});

/** Runs the HEALTHCHECK's command for the server `pid` (PID 1 in the container). */
async function runProbe(line: string[], pid: number): Promise<{ code: number; said: string }> {
  const [command, ...args] = line.map((arg) => arg.replace("/bin/deno", Deno.execPath()));
  assert.equal(args.at(-1), "1", "the probe asks about PID 1");
  const { code, stdout, stderr } = await new Deno.Command(command, {
    args: [...args.slice(0, -1), String(pid)],
    cwd: ROOT,
  }).output();
  const decoder = new TextDecoder();
  return { code, said: decoder.decode(stdout) + decoder.decode(stderr) };
}

Deno.test({
  name: "deploy: the HEALTHCHECK follows the CMD's --admin, and a CMD without one is healthy",
  ignore: Deno.build.os !== "linux",
}, async () => {
  const line = execForm(/^HEALTHCHECK [^\n]*\\\n\s*CMD (\[.*\])$/m);
  const poems = `${ROOT}/poems/a-short-one.txt`;
  // Another admin port than the image's, in the --admin=HOST:PORT form.
  const admin = freePort();
  const other = await startServer(["--iface", "127.0.0.1", `--admin=0.0.0.0:${admin}`, poems]);
  try {
    assert.deepEqual(await runProbe(line, other.process.pid), { code: 0, said: "" });
  } finally {
    await other.stop();
  }
  // No --admin: nothing to ask; healthy while it runs, and it says so.
  const bare = await startServer(["--iface", "127.0.0.1", poems]);
  try {
    const { code, said } = await runProbe(line, bare.process.pid);
    assert.equal(code, 0, said);
    assert.match(said, /no admin endpoint to ask/);
  } finally {
    await bare.stop();
  }
});

Deno.test("deploy: the healthcheck reads --admin as the server does", () => {
  assert.equal(
    adminOption(["deno", "run", "main.ts", "--admin", "0.0.0.0:9100", "p"]),
    "0.0.0.0:9100",
  );
  assert.equal(adminOption(["main.ts", "--admin=a:1", "--admin", "[::]:2"]), "[::]:2");
  assert.equal(adminOption(["main.ts", "poems/"]), undefined);
  assert.equal(adminOption(["main.ts", "--", "--admin", "x:1"]), undefined);
  assert.equal(healthUrl("0.0.0.0:9100"), "http://127.0.0.1:9100/healthz");
  assert.equal(healthUrl("[::]:9100"), "http://[::1]:9100/healthz");
  assert.equal(healthUrl("[::1]:9101"), "http://[::1]:9101/healthz");
  assert.equal(healthUrl("localhost:9102"), "http://localhost:9102/healthz");
  assert.equal(healthUrl("127.0.0.1:0"), undefined);
});

Deno.test("deploy: kubernetes.yaml gives the drain time to finish and probes /healthz on the admin port", async () => {
  const docs = parseAllDocuments(await Deno.readTextFile(`${ROOT}/deploy/kubernetes.yaml`));
  for (const doc of docs) assert.deepEqual(doc.errors, [], "valid YAML");
  const [deployment, service] = docs.map((doc) => doc.toJS());
  assert.equal(deployment.kind, "Deployment");
  assert.equal(service.kind, "Service");
  const pod = deployment.spec.template.spec;
  const [container] = pod.containers;
  const cli = parseCommandLine(container.args);
  const drain = cli.serve.drainTimeout ?? 10;
  const preStop = container.lifecycle?.preStop?.sleep?.seconds ?? 0;
  assert.ok(
    pod.terminationGracePeriodSeconds > preStop + drain,
    `grace ${pod.terminationGracePeriodSeconds} s > preStop ${preStop} s + drain ${drain} s`,
  );
  const portNamed = (name: string) =>
    container.ports.find((p: { name: string }) => p.name === name).containerPort;
  assert.equal(container.readinessProbe.httpGet.path, "/healthz");
  assert.equal(portNamed(container.readinessProbe.httpGet.port), cli.admin?.port);
  assert.equal(portNamed("poem"), cli.serve.port);
  assert.equal(pod.securityContext.runAsNonRoot, true);
  // The Service selects the pods and points at the poem port.
  assert.deepEqual(service.spec.selector, deployment.spec.template.metadata.labels);
  assert.equal(service.spec.ports[0].targetPort, "poem");
  // A real image reference (lower case, no placeholder) of this version.
  const version = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`)).version;
  assert.match(container.image, /^([a-z0-9.-]+(:\d+)?\/)?[a-z0-9._/-]+:[\w.-]+$/);
  assert.doesNotMatch(container.image, /OWNER|<|>/);
  assert.ok(container.image.endsWith(`poetry:${version}`), container.image);
  // Prometheus's pod discovery finds /metrics on the admin port.
  const annotations = deployment.spec.template.metadata.annotations ?? {};
  assert.equal(annotations["prometheus.io/scrape"], "true");
  assert.equal(annotations["prometheus.io/port"], String(cli.admin?.port));
  assert.equal(annotations["prometheus.io/path"], "/metrics");
  assert.equal(portNamed("admin"), cli.admin?.port);
  // The Dockerfile's user is the one the pod runs as.
  assert.match(dockerfile, new RegExp(`^USER ${pod.securityContext.runAsUser}:`, "m"));
  assert.equal(typeof parse("a: 1").a, "number");
});

Deno.test({
  name:
    "deploy: the systemd unit in docs/operations.md starts without Deno or the network, and its options serve",
  ignore: Deno.build.os === "windows",
}, async () => {
  const page = await Deno.readTextFile(`${ROOT}/docs/operations.md`);
  const section = page.slice(page.indexOf("## Under systemd"));
  const unit = /```ini\n([\s\S]*?)```/.exec(section)![1].replace(/\\\n\s*/g, "");
  const execStart = /^ExecStart=(.*)$/m.exec(unit)![1].trim().split(/\s+/);
  const [program, ...args] = execStart;
  // Not `deno run` fetching npm packages at boot: the compiled binary, or a
  // Deno that runs only what is cached.
  const deno = /(^|\/)deno$/.test(program);
  assert.ok(!deno || args.includes("--cached-only"), `ExecStart: ${execStart.join(" ")}`);
  // The page says how the program gets where the unit looks for it.
  assert.match(section, new RegExp(`install [^\\n]* ${program.replaceAll("/", "\\/")}\\b`));
  // Its options, run here (this repository's server in place of the binary).
  const poems = await makePoems({ "a.txt": "A poem for the unit.\n" });
  const port = freePort();
  const server = await startServer(
    args.map((arg) => arg === "/srv/poems" ? poems.dir : arg.replace(/^10000$/, String(port))),
    { command: serverCommand() },
  );
  try {
    assert.equal(server.addresses[0].port, port);
    assert.equal(
      new TextDecoder().decode(await fetchBytes(server.addresses[0])),
      "A poem for the unit.\n",
    );
    const log = await server.waitForLines(/"outcome":"completed"/, 1);
    for (const line of log.trim().split("\n")) JSON.parse(line);
  } finally {
    assert.equal((await server.stop()).code, 0);
    await poems.cleanup();
  }
});

Deno.test("deploy: the Prometheus scrape config in docs/observing.md samples often enough for rate() in a short run", async () => {
  const page = await Deno.readTextFile(`${ROOT}/docs/observing.md`);
  const yaml = /```yaml\n([\s\S]*?)```/.exec(page.slice(page.indexOf("## Metrics")))![1];
  const [job] = parse(yaml).scrape_configs;
  // Prometheus's default is 1m: one sample a minute, no rate() in a short run.
  const interval = /^(\d+)s$/.exec(job.scrape_interval ?? "");
  assert.ok(interval && Number(interval[1]) <= 15, `scrape_interval: ${job.scrape_interval}`);
  assert.deepEqual(job.static_configs[0].targets, ["127.0.0.1:9100"]);
});
