/**
 * The `poetry` command: parses the command line and wires the library
 * together. All behaviour lives in lib/.
 *
 * @module
 */

import { parseCommandLine, USAGE } from "./cli/options.ts";
import { formatAddress } from "./lib/base/address.ts";
import { EXIT_RUNTIME, PoetryError } from "./lib/base/errors.ts";
import { escapeControl } from "./lib/base/log_format.ts";
import { flushLogs, setupLogging, writeInBackground } from "./lib/base/log.ts";
import { VERSION } from "./lib/base/version.ts";
import type { ControlEndpoint } from "./lib/control/control.ts";
import { randomSeed } from "./lib/fixture/fault_spec.ts";
import type { AdminEndpoint } from "./lib/observe/admin.ts";
import { ServerStats } from "./lib/observe/stats.ts";
import { ServerGroup } from "./lib/scale/group.ts";
import type { ServeOptions } from "./lib/server/options.ts";
import { type PoetryServer, serve } from "./lib/server/server.ts";
import { holdReloadSignals, holdStopSignals, runAsService } from "./lib/service/service.ts";

// Load on use: start-up is mostly loading modules, so what only some runs
// use is imported when a run asks for it (issue 19; the costs measured are
// in docs/benchmark.md, "Start-up"). String literals, so that `deno compile` embeds
// these modules and `deno info` (and the layering test) still sees them.
const onUse = {
  config: () => import("./lib/service/config.ts"),
  portsFile: () => import("./lib/service/ports_file.ts"),
  metrics: () => import("./lib/observe/metrics.ts"),
  admin: () => import("./lib/observe/admin.ts"),
  workers: () => import("./lib/scale/workers.ts"),
  control: () => import("./lib/control/control.ts"),
};

async function main(args: string[]): Promise<number> {
  // First of all: until a handler is in, SIGHUP ends the process, and loading
  // many poems takes a while.
  const held = holdReloadSignals();
  const cli = parseCommandLine(args);
  if (cli.help) {
    console.log(USAGE);
    return 0;
  }
  if (cli.version) {
    console.log(`poetry ${VERSION}`);
    return 0;
  }
  setupLogging({ level: cli.logLevel, format: cli.logFormat });
  // Before anything binds: a missing permission is an exit 2, not a server
  // that starts, serves and stops.
  const portsFile = cli.portsFile === undefined
    ? undefined
    : (await onUse.portsFile()).PortsFile.check(cli.portsFile);
  // The samples sit beside this file: in the repository, or embedded in a
  // compiled binary with `deno compile --include poems`.
  const samples = cli.samples ? [`${import.meta.dirname}/poems`] : [];
  // Bytes sent are counted always (SIGUSR2 reports them); durations and
  // start times only for the admin endpoint.
  const stats = new ServerStats();
  const metrics = cli.admin ? new (await onUse.metrics()).PoetryMetrics(stats) : undefined;
  // With --config the file declares the listeners; see combineConfig for
  // how its settings and the command line's combine.
  const config = cli.config === undefined ? undefined : await readConfig(cli.config, cli.serve);
  const poems = [...cli.poems, ...samples];
  const combined = config?.options ?? cli.serve;
  // With --workers, one seed for all of them (the one the log shows), and
  // the workers' threads started now, to load while the poems do.
  const many = cli.workers > 1;
  const options = many
    ? { ...combined, reusePort: true, seed: combined.seed ?? randomSeed() }
    : combined;
  // Each POEM is one listener at least (a directory may give more).
  const listeners = poems.length + (combined.listeners?.length ?? 0);
  const workers = many
    ? await (await onUse.workers()).WorkerPool.spawn(cli.workers - 1, { listeners })
    : undefined;
  // Held from just before the first listener serves until the service's own
  // handlers are in: a stop while the workers join drains, not kills.
  const stops = many ? holdStopSignals() : undefined;
  let server;
  try {
    server = await serve(poems, { ...options, observer: metrics ?? stats });
  } catch (err) {
    workers?.terminate();
    throw err;
  }
  const group = new ServerGroup(server, workers, {
    stats,
    metrics,
    // Under --control the endpoint owns the faults: SIGHUP re-reads the poems only.
    reload: cli.control ? undefined : config && (() => config.reload(server)),
  });
  let admin: AdminEndpoint | undefined;
  let control: ControlEndpoint | undefined;
  try {
    await workers?.join(server, {
      poems,
      options,
      log: { level: cli.logLevel, format: cli.logFormat },
      metrics: metrics !== undefined,
      config: cli.config === undefined ? undefined : { path: cli.config, commandLine: cli.serve },
    });
    if (cli.admin && metrics) {
      const { AdminEndpoint } = await onUse.admin();
      admin = AdminEndpoint.start(group, { ...cli.admin, metrics, iface: cli.serve.iface });
    }
    if (cli.control) {
      const { ControlEndpoint } = await onUse.control();
      control = ControlEndpoint.start(server, {
        ...cli.control,
        iface: cli.serve.iface,
        config: cli.config,
      });
    }
  } catch (err) {
    await admin?.shutdown();
    await group.shutdown(0);
    throw err;
  }
  if (portsFile) {
    try {
      await portsFile.write(server);
    } catch (err) {
      await Promise.all([admin?.shutdown(), control?.shutdown()]);
      await group.shutdown(0);
      throw err;
    }
  }
  // Signal handlers go in before the Serving lines: a supervisor that reads
  // a line and sends SIGHUP or SIGTERM at once must not kill the process.
  const stopped = runAsService(group, {
    held: stops ? [held, stops] : held,
    watch: cli.watch,
    statsInterval: cli.statsInterval,
  });
  // A file name holding a newline must not print a second, forged line; and
  // a stdout nobody reads must not stop serving (console.log would block
  // once the pipe's 64 KiB are full), so the lines go out in the background.
  writeInBackground(
    Deno.stdout,
    server.listeners.map(({ poem, addr }) =>
      `Serving ${escapeControl(poem.path)} on ${formatAddress(addr)}.\n`
    ).join(""),
  );
  await stopped;
  // Drained: no listener is left for a harness to find in it.
  portsFile?.remove();
  // /healthz said 503 through the drain; now nothing is left to report.
  await admin?.shutdown();
  await control?.shutdown();
  return 0;
}

/**
 * `--config`: the file's settings combined with the command line's, and how
 * a reload re-reads it.
 */
async function readConfig(path: string, commandLine: ServeOptions) {
  const { combineConfig, loadConfig, reloadConfig } = await onUse.config();
  return {
    options: combineConfig(await loadConfig(path), commandLine),
    reload: (server: PoetryServer) => reloadConfig(server, path, commandLine),
  };
}

/**
 * The `--log-format` asked for, read from the arguments themselves: the
 * error may be that the rest of the command line does not parse.
 */
function logFormatIn(args: string[]): string | undefined {
  let format: string | undefined;
  for (let i = 0; i < args.length && args[i] !== "--"; i++) {
    if (args[i] === "--log-format") format = args[++i];
    else if (args[i].startsWith("--log-format=")) format = args[i].slice("--log-format=".length);
  }
  return format;
}

// Long enough to write a full log buffer to a working stderr; a stuck one
// must not keep the process from exiting.
const LOG_FLUSH_MS = 2000;

if (import.meta.main) {
  try {
    const code = await main(Deno.args);
    await flushLogs(LOG_FLUSH_MS);
    Deno.exit(code);
  } catch (err) {
    // Records logged before the failure go out before the error line.
    await flushLogs(LOG_FLUSH_MS);
    // Bad input and start-up failures are one or two plain lines, not a
    // trace; a file name in them cannot add a line. Under --log-format json,
    // one record shaped as the log's, for the collector that reads the rest.
    const known = err instanceof PoetryError;
    const message = err instanceof Error ? err.message : String(err);
    const hint = known ? err.hint : undefined;
    const exitCode = known ? err.exitCode : EXIT_RUNTIME;
    if (logFormatIn(Deno.args) === "json") {
      console.error(JSON.stringify({
        "@timestamp": new Date().toISOString(),
        level: "ERROR",
        message: `error: ${message}`,
        logger: "poetry",
        ...(hint ? { hint } : {}),
        exitCode,
      }));
    } else {
      console.error(`error: ${escapeControl(message)}`);
      if (hint) console.error(`  ${escapeControl(hint)}`);
    }
    Deno.exit(exitCode);
  }
}
