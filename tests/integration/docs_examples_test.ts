// The README's and docs' shell examples run as written: every fenced `sh`
// block marked `<!-- run -->` (see tests/doc_examples.ts for the marks), in a
// scratch copy of the repository, with free ports in place of the fixed ones
// (in the commands, deno.json and examples/ alike), `deno` off PATH where the
// block says `node-only`, each script bounded in time, background commands
// started in order (each once the ports the ones before it name accept),
// still running at the end of their section and then stopped, and the output
// the page shows found in what the block printed (in any order). The blocks of one section
// share one scratch directory: a server started in one is fetched from in the
// next, as in two terminals.
//
// Linux only: each command runs in its own session (setsid), so that a
// server started through npx and `deno task` is stopped with all its children.

import assert from "node:assert/strict";
import { cpSync } from "node:fs";
import { delay, findProgram, freePortRange, ROOT } from "../helpers.ts";
import {
  allRunnableBlocks,
  type DocBlock,
  fixedPorts,
  freePortsFor,
  withPorts,
} from "../doc_examples.ts";

const linux = Deno.build.os === "linux";
const SCRIPT_MS = 30_000;
const READY_MS = 30_000;
/** What the examples use of the repository, copied to the scratch directory. */
const COPIED = ["deno.json", "deno.lock", "main.ts", "cli", "lib", "poems", "examples", "deploy"];
/** Copied files that name fixed ports: the same free ports go there. */
const WITH_PORTS = ["deno.json", "examples/haproxy.cfg", "examples/poetry.jsonc"];
const BACKGROUND = /\s*&\s*(#.*)?$/;

const groups = new Map<string, DocBlock[]>();
for (const block of allRunnableBlocks()) {
  const name = `${block.file} › ${block.section}`;
  groups.set(name, [...(groups.get(name) ?? []), block]);
}

Deno.test("docs examples: the Quickstart, the HAProxy example and the --ports-file example are marked to run", () => {
  const names = [...groups.keys()];
  for (
    const must of [
      "README.md › Quickstart",
      "docs/scaling.md › HAProxy",
      "docs/testing-clients.md › For test harnesses: `--ports-file` and the library",
    ]
  ) {
    assert.ok(names.includes(must), `${must} among ${JSON.stringify(names)}`);
  }
  // The Quickstart is written for a machine without Deno.
  assert.ok(groups.get("README.md › Quickstart")!.every((block) => block.nodeOnly));
});

for (const [name, group] of groups) {
  const missing = group.flatMap((block) => block.needs)
    .filter((program) => !findProgram(program, `/usr/sbin/${program}`));
  if (linux && missing.length > 0) {
    console.log(`docs examples: ${name} skipped: ${missing.join(", ")} not installed`);
  }
  Deno.test({
    name: `docs examples: ${name} runs as written`,
    ignore: !linux || missing.length > 0,
    fn: () => runSection(group),
  });
}

/** A command left running in the background, in a session of its own. */
interface Background {
  command: string;
  where: string;
  process: Deno.ChildProcess;
  output(): string;
  exited?: Deno.CommandStatus;
  /** The ports its line names. */
  ports: number[];
  stop(): Promise<void>;
}

async function runSection(group: DocBlock[]): Promise<void> {
  const ports = freePortsFor(freePortRange(20));
  const scratch = await Deno.makeTempDir({ prefix: "poetry-docs-" });
  const background: Background[] = [];
  try {
    for (const entry of COPIED) {
      cpSync(`${ROOT}/${entry}`, `${scratch}/${entry}`, { recursive: true });
    }
    for (const file of WITH_PORTS) {
      const text = await Deno.readTextFile(`${scratch}/${file}`);
      await Deno.writeTextFile(`${scratch}/${file}`, withPorts(text, ports));
    }
    // `deno` is this test's own Deno, first on PATH, unless the block is node-only.
    await Deno.mkdir(`${scratch}/.bin`);
    await Deno.symlink(Deno.execPath(), `${scratch}/.bin/deno`);
    // The ports the section names, up once its background commands are.
    const named = fixedPorts(group.flatMap((block) => block.commands).join("\n"))
      .map((port) => ports.get(port)!);
    for (const block of group) {
      const where = `${block.file}:${block.line}`;
      const env = await environment(block, `${scratch}/.bin`);
      const commands = block.commands.map((command) => withPorts(command, ports));
      // In the page's order: the commands before a background one run first.
      const printed = { stdout: "", stderr: "" };
      let script: string[] = [];
      const flush = async () => {
        if (script.length === 0) return;
        if (background.length > 0) await waitForPorts(named, background);
        const result = await runScript(script.join("\n"), scratch, env);
        script = [];
        printed.stdout += result.stdout;
        printed.stderr += result.stderr;
        assert.equal(
          result.code,
          0,
          `${where}: exited ${result.code}:\n${printed.stdout}\n${printed.stderr}`,
        );
      };
      for (const command of commands) {
        if (block.background || BACKGROUND.test(command)) {
          await flush();
          // As a person starts them one after another: each once the ones
          // before it are up (HAProxy's first check must find its servers).
          await waitForPorts(background.flatMap((job) => job.ports), background);
          const job = startBackground(command.replace(BACKGROUND, ""), scratch, env, where);
          job.ports = fixedPorts(block.commands[commands.indexOf(command)])
            .map((port) => ports.get(port)!);
          background.push(job);
        } else {
          script.push(command);
        }
      }
      await flush();
      if (block.output !== undefined) assertShows(printed, withPorts(block.output, ports), where);
    }
    await waitForPorts(named, background);
    for (const job of background) {
      assert.equal(
        job.exited,
        undefined,
        `${job.where}: '${job.command}' exited (${job.exited?.code}) before the end:\n` +
          job.output(),
      );
    }
  } finally {
    for (const job of background) await job.stop();
    await Deno.remove(scratch, { recursive: true });
  }
}

/** The environment a block runs in: `deno` first on PATH, or nowhere for node-only. */
async function environment(block: DocBlock, bin: string): Promise<Record<string, string>> {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/usr/local/sbin"];
  const env = { ...Deno.env.toObject(), NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" };
  if (!block.nodeOnly) return { ...env, PATH: [bin, ...dirs].join(":") };
  const withoutDeno = dirs.filter((dir) => {
    try {
      return !Deno.statSync(`${dir}/deno`).isFile;
    } catch {
      return true;
    }
  });
  const nodeOnly = { ...env, PATH: withoutDeno.join(":") };
  const { code } = await new Deno.Command("sh", {
    args: ["-c", "command -v deno"],
    env: nodeOnly,
    clearEnv: true,
    stdout: "null",
  }).output();
  assert.notEqual(code, 0, `${block.file}:${block.line}: deno is still on PATH for node-only`);
  return nodeOnly;
}

function startBackground(
  command: string,
  cwd: string,
  env: Record<string, string>,
  where: string,
): Background {
  const process = new Deno.Command("setsid", {
    args: ["sh", "-c", command],
    cwd,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  // Done once every process of the session has closed its ends of the pipes.
  const reading = Promise.all([process.stdout, process.stderr].map(async (stream) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) text += chunk;
  }));
  const job: Background = {
    command,
    where,
    process,
    output: () => text,
    ports: [],
    async stop() {
      signalSession(process.pid, "SIGTERM");
      const late = setTimeout(() => signalSession(process.pid, "SIGKILL"), 10_000);
      await Promise.all([process.status, reading]);
      clearTimeout(late);
    },
  };
  process.status.then((status) => job.exited = status);
  return job;
}

function signalSession(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(-pid, signal);
  } catch {
    // The whole session is gone already.
  }
}

/** Runs `script` with `sh -e` in its own session, killed with it after SCRIPT_MS. */
async function runScript(
  script: string,
  cwd: string,
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const process = new Deno.Command("setsid", {
    args: ["sh", "-ec", script],
    cwd,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const late = setTimeout(() => signalSession(process.pid, "SIGKILL"), SCRIPT_MS);
  const { code, stdout, stderr } = await process.output();
  clearTimeout(late);
  signalSession(process.pid, "SIGKILL");
  const decoder = new TextDecoder();
  return { code, stdout: decoder.decode(stdout), stderr: decoder.decode(stderr) };
}

/** Waits until every port accepts a connection; fails at once if a background command exits. */
async function waitForPorts(ports: number[], background: Background[]): Promise<void> {
  const deadline = Date.now() + READY_MS;
  for (const port of ports) {
    for (;;) {
      const gone = background.find((job) => job.exited);
      if (gone) {
        assert.fail(
          `${gone.where}: '${gone.command}' exited (${gone.exited!.code}):\n${gone.output()}`,
        );
      }
      if (await accepts(port)) break;
      if (Date.now() > deadline) {
        assert.fail(
          `port ${port} not up after ${READY_MS} ms:\n` +
            background.map((job) => `${job.command}:\n${job.output()}`).join("\n"),
        );
      }
      await delay(100);
    }
  }
}

async function accepts(port: number): Promise<boolean> {
  for (const hostname of ["127.0.0.1", "::1"]) {
    try {
      (await Deno.connect({ hostname, port })).close();
      return true;
    } catch {
      // Not (yet) on this address.
    }
  }
  return false;
}

/** Times vary from run to run: `0.01s`, `3 ms`. */
function normalized(line: string): string {
  return line.replace(/\b\d+(\.\d+)?s\b/g, "Ns").replace(/\b\d+ ms\b/g, "N ms").trimEnd();
}

/**
 * Each line the page shows is one the block printed, on stdout or stderr,
 * each a line of its own; in any order, since tasks that run at once (two
 * fetches) finish in any order.
 */
function assertShows(
  result: { stdout: string; stderr: string },
  shown: string,
  where: string,
): void {
  const printed = `${result.stdout}\n${result.stderr}`.split("\n").map(normalized);
  for (const line of shown.split("\n").map(normalized)) {
    const at = printed.indexOf(line);
    assert.ok(
      at >= 0,
      `${where}: the page shows '${line}', the block printed:\n` +
        `${result.stdout}\n--- stderr:\n${result.stderr}`,
    );
    printed.splice(at, 1);
  }
}
