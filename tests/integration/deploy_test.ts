// What the container and the cluster run, run here: docker and kubectl are
// not on this machine, so the Dockerfile's own ENTRYPOINT, CMD and HEALTHCHECK
// lines are run as they stand (its paths mapped onto the repository, loopback
// for 0.0.0.0, free ports), and deploy/kubernetes.yaml is parsed and checked
// against the program's options.

import assert from "node:assert/strict";
import { parse, parseAllDocuments } from "yaml";
import { parseCommandLine } from "../../cli/options.ts";
import { fetchBytes, freePort, freePortRange, ROOT, startServer } from "../helpers.ts";

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
  const healthcheck = here(execForm(/^HEALTHCHECK [^\n]*\\\n\s*CMD (\[.*\])$/m));
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
  const probe = async () => {
    const [command, ...args] = healthcheck;
    const { code } = await new Deno.Command(command, { args, cwd: ROOT, stderr: "null" }).output();
    return code;
  };
  try {
    assert.equal(server.addresses[0].port, firstPort);
    const first = [...Deno.readDirSync(`${ROOT}/poems`)].map((e) => e.name).sort()[0];
    assert.deepEqual(
      await fetchBytes(server.addresses[0]),
      await Deno.readFile(`${ROOT}/poems/${first}`),
    );
    assert.equal(await probe(), 0, "healthy while serving");
    // JSON logs, one object per line, for the cluster's log collector.
    const lines = (await server.waitForLines(/"outcome":"completed"/, 1)).trim().split("\n");
    for (const line of lines) JSON.parse(line);
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
  assert.equal(await probe(), 1, "unhealthy once gone");
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
  // The Dockerfile's user is the one the pod runs as.
  assert.match(dockerfile, new RegExp(`^USER ${pod.securityContext.runAsUser}:`, "m"));
  assert.equal(typeof parse("a: 1").a, "number");
});
