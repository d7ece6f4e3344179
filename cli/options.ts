/**
 * The command line: turns `Deno.args` into typed options, or a
 * {@linkcode UsageError} that says what is wrong and what to do.
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../lib/base/errors.ts";
import { parseCidr } from "../lib/policies/access.ts";
import type { ServeOptions } from "../lib/server/options.ts";
import { parseFault } from "../lib/fixture/fault_spec.ts";
import { closest } from "./suggest.ts";

export { USAGE } from "./usage.ts";
import type { LogFormat } from "../lib/base/log_format.ts";
import type { LogLevelName } from "../lib/base/log.ts";

const LOG_LEVELS: LogLevelName[] = ["debug", "info", "warning", "error"];

/**
 * Everything the command line asks for.
 *
 * @example
 * ```ts
 * import { type CommandLine, parseCommandLine } from "./options.ts";
 * const cli: CommandLine = parseCommandLine(["--delay", "0.5", "poems/"]);
 * console.log(cli.serve.pace); // { numBytes: 10, delay: 0.5 }
 * ```
 */
export interface CommandLine {
  /** The POEM arguments as given: files or directories. */
  poems: string[];
  /** Options for the listeners and senders. */
  serve: ServeOptions;
  /** Lowest level that is logged. @default {"info"} */
  logLevel: LogLevelName;
  /** Log record format. @default {"text"} */
  logFormat: LogFormat;
  /** Re-read a poem when its file changes. @default {false} */
  watch: boolean;
  /** Also serve the sample poems shipped with the program. @default {false} */
  samples: boolean;
  /** Where the admin endpoint (metrics, health, status page) listens; off when absent. */
  admin?: { hostname: string; port: number; names?: string[] };
  /**
   * Where the control endpoint (Toxiproxy's HTTP API) listens, and whether
   * it answers peers off loopback; off when absent.
   */
  control?: { hostname: string; port: number; allowRemote: boolean };
  /** Seconds between stats records in the log; 0 is off. @default {0} */
  statsInterval: number;
  /** A `--config` file declaring the listeners, each with its own settings. */
  config?: string;
  /** Where to write the listeners' addresses as JSON once all listen. */
  portsFile?: string;
  /**
   * Threads that accept and serve, each on every listener's address
   * (`SO_REUSEPORT`, Linux); `--workers auto` is the number of cores.
   * @default {1}
   */
  workers: number;
  /** `--help` was given: print usage and exit. */
  help: boolean;
  /** `--version` was given: print the version and exit. */
  version: boolean;
}

const config = {
  allowPositionals: true,
  strict: true,
  options: {
    port: { type: "string" },
    iface: { type: "string" },
    "num-bytes": { type: "string" },
    delay: { type: "string" },
    "max-connections": { type: "string" },
    "write-timeout": { type: "string" },
    "drain-timeout": { type: "string" },
    allow: { type: "string", multiple: true },
    deny: { type: "string", multiple: true },
    "proxy-protocol": { type: "boolean" },
    watch: { type: "boolean" },
    samples: { type: "boolean" },
    admin: { type: "string" },
    "admin-name": { type: "string", multiple: true },
    "stats-interval": { type: "string" },
    control: { type: "string" },
    "control-allow-remote": { type: "boolean" },
    fault: { type: "string", multiple: true },
    seed: { type: "string" },
    config: { type: "string" },
    "ports-file": { type: "string" },
    "log-level": { type: "string" },
    "log-format": { type: "string" },
    workers: { type: "string" },
    help: { type: "boolean", short: "h" },
    version: { type: "boolean", short: "V" },
  },
} satisfies ParseArgsConfig;

const HELP_HINT = "run with --help to see the options";

const OPTION_NAMES = Object.keys(config.options).map((name) => `--${name}`);

/**
 * Parses a command line.
 *
 * @example
 * ```ts
 * import { parseCommandLine } from "./options.ts";
 * const cli = parseCommandLine(["--port", "10000", "poems/"]);
 * console.log(cli.serve.port); // 10000
 * ```
 * @throws {UsageError} on anything that is not a valid command line.
 */
export function parseCommandLine(args: string[]): CommandLine {
  let parsed;
  try {
    parsed = parseArgs({ ...config, args: joinDashValues(args) });
  } catch (err) {
    throw toUsageError(err);
  }
  const { values, positionals } = parsed;
  const cli: CommandLine = {
    poems: positionals,
    serve: {},
    logLevel: oneOf("--log-level", values["log-level"], LOG_LEVELS, "info"),
    logFormat: oneOf("--log-format", values["log-format"], ["text", "json"], "text"),
    watch: values.watch ?? false,
    samples: values.samples ?? false,
    statsInterval: 0,
    workers: 1,
    help: values.help ?? false,
    version: values.version ?? false,
  };
  if (cli.help || cli.version) return cli;
  cli.config = path("--config", values.config);
  cli.portsFile = path("--ports-file", values["ports-file"]);
  if (cli.config !== undefined && positionals.length > 0) {
    throw new UsageError(
      `POEM arguments and --config do not mix, got '${positionals[0]}'`,
      "name every poem in the config file's listeners",
    );
  }
  if (positionals.length === 0 && !cli.samples && cli.config === undefined) {
    throw new UsageError(
      "no poem given",
      "name a poem file or directory, e.g. poetry poems/, or use --samples",
    );
  }
  const serve = cli.serve;
  serve.port = integer("--port", values.port, 0, 65535);
  if (values.iface !== undefined) {
    if (values.iface.trim() === "") {
      throw new UsageError("--iface is empty", "use e.g. --iface 127.0.0.1");
    }
    serve.iface = values.iface;
  }
  const delay = seconds("--delay", values.delay);
  const numBytes = integer("--num-bytes", values["num-bytes"], 1, 2 ** 30);
  // --num-bytes alone would be fast mode all the same: whoever gives it
  // expects slow mode, so say what is missing. With --config too, since the
  // command line's pace replaces the file's top level whole.
  if (numBytes !== undefined && delay === undefined) {
    throw new UsageError(
      `--num-bytes ${numBytes} needs --delay: without it each poem goes out at once (fast mode)`,
      `add --delay SECONDS for slow mode, e.g. --num-bytes ${numBytes} --delay 0.5`,
    );
  }
  if (delay !== undefined || numBytes !== undefined) {
    serve.pace = { numBytes: numBytes ?? 10, delay: delay ?? 0 };
  }
  serve.maxConnections = integer("--max-connections", values["max-connections"], 1, 2 ** 31);
  serve.writeTimeout = seconds("--write-timeout", values["write-timeout"]);
  serve.drainTimeout = seconds("--drain-timeout", values["drain-timeout"]);
  serve.allow = cidrs("--allow", values.allow);
  serve.deny = cidrs("--deny", values.deny);
  if (values["proxy-protocol"]) serve.proxyProtocol = true;
  if (values.fault) serve.faults = values.fault.map((spec) => parseFault(spec));
  if (values.seed !== undefined) serve.seed = integer("--seed", values.seed, 0, 2 ** 32 - 1);
  if (values.admin !== undefined) cli.admin = hostAndPort("--admin", values.admin);
  const names = values["admin-name"];
  if (names !== undefined) {
    if (!cli.admin) {
      throw new UsageError("--admin-name needs --admin", "add e.g. --admin 127.0.0.1:9100");
    }
    cli.admin.names = names.map(hostName);
  }
  cli.statsInterval = seconds("--stats-interval", values["stats-interval"]) ?? 0;
  cli.workers = workers(values.workers);
  cli.control = control(values.control, values["control-allow-remote"] ?? false, cli.workers);
  // A toxic added at run time may reset: every listener must be able to.
  if (cli.control) serve.resettable = true;
  return cli;
}

// The control endpoint changes one thread's listeners: with workers, the
// others would go on serving the old faults (and a disabled proxy's port).
function control(
  text: string | undefined,
  allowRemote: boolean,
  workers: number,
): CommandLine["control"] {
  if (text === undefined) {
    if (allowRemote) {
      throw new UsageError(
        "--control-allow-remote needs --control",
        "add e.g. --control 127.0.0.1:8474",
      );
    }
    return undefined;
  }
  const { hostname, port } = hostAndPort("--control", text);
  if (workers > 1) {
    throw new UsageError(
      "--control does not work with --workers: a fault added through it would reach one thread's clients only",
      "drop --workers (a client test needs one thread), or --control",
    );
  }
  const loopback = hostname === "localhost" || /^127\.\d+\.\d+\.\d+$/.test(hostname) ||
    hostname === "::1";
  if (!loopback && !allowRemote) {
    throw new UsageError(
      `--control ${text} is off loopback: anyone who reaches it could fault every client`,
      "use e.g. --control 127.0.0.1:8474, or add --control-allow-remote if you mean it",
    );
  }
  return { hostname, port, allowRemote };
}

/** Most `--workers`: each is a V8 isolate of some 10 MiB, and 2 cores are common. */
const MAX_WORKERS = 256;

function workers(text: string | undefined): number {
  if (text === undefined) return 1;
  const count = text === "auto"
    ? navigator.hardwareConcurrency
    : integer("--workers", text, 1, MAX_WORKERS, "or auto")!;
  // Elsewhere SO_REUSEPORT either does not exist or does not spread
  // connections over the sockets that share a port (macOS hands them all to
  // the last one bound), so several workers would not share the load.
  if (count > 1 && Deno.build.os !== "linux") {
    throw new UsageError(
      `--workers ${text} needs Linux (SO_REUSEPORT), not ${Deno.build.os}`,
      "run one process per core behind a load balancer instead; see docs/scaling.md",
    );
  }
  return Math.min(count, MAX_WORKERS);
}

function path(name: string, text: string | undefined): string | undefined {
  if (text !== undefined && text.trim() === "") {
    throw new UsageError(
      `${name} is empty`,
      `name a file, e.g. ${name} ${name === "--config" ? "examples/poetry.jsonc" : "ports.json"}`,
    );
  }
  return text;
}

// parseArgs calls `--port -5` ambiguous; joined as `--port=-5` it reaches
// our own check, which can say what is wrong with the value.
function joinDashValues(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = args[i].slice(2) as keyof typeof config.options;
    const takesValue = args[i].startsWith("--") &&
      config.options[name]?.type === "string";
    if (takesValue && i + 1 < args.length && args[i + 1].startsWith("-")) {
      out.push(`${args[i]}=${args[++i]}`);
    } else {
      out.push(args[i]);
    }
  }
  return out;
}

function toUsageError(err: unknown): UsageError {
  const { code, message } = err as { code?: string; message: string };
  const option = message.match(/'(-[^' ]+)/)?.[1] ?? "";
  switch (code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION": {
      const likely = closest(option, OPTION_NAMES);
      return new UsageError(
        `unknown option ${option}`,
        likely ? `did you mean ${likely}? (${HELP_HINT})` : HELP_HINT,
      );
    }
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return message.includes("does not take an argument")
        ? new UsageError(`${option} does not take a value`, HELP_HINT)
        : new UsageError(`${option} needs a value`, HELP_HINT);
    default:
      return new UsageError(message.split("\n")[0], HELP_HINT);
  }
}

function integer(
  name: string,
  text: string | undefined,
  min: number,
  max: number,
  alternative = "",
): number | undefined {
  if (text === undefined) return undefined;
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(value >= min && value <= max)) {
    throw new UsageError(
      `${name} must be a whole number from ${min} to ${max}${
        alternative && ` ${alternative}`
      }, got '${text}'`,
      HELP_HINT,
    );
  }
  return value;
}

function seconds(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = /^(\d+\.?\d*|\.\d+)$/.test(text) ? Number(text) : NaN;
  if (!Number.isFinite(value) || value > 86_400) {
    throw new UsageError(
      `${name} must be a number of seconds from 0 to 86400, got '${text}'`,
      `use e.g. ${name} 0.5`,
    );
  }
  return value;
}

function oneOf<T extends string>(
  name: string,
  text: string | undefined,
  choices: readonly T[],
  fallback: T,
): T {
  if (text === undefined) return fallback;
  if (!choices.includes(text as T)) {
    throw new UsageError(
      `${name} must be one of ${choices.join(", ")}, got '${text}'`,
    );
  }
  return text as T;
}

// HOST:PORT or [IPV6]:PORT, port 0 allowed (the system picks; the log says
// which). No default host: where the admin endpoint listens is said outright.
function hostAndPort(name: string, text: string): { hostname: string; port: number } {
  const match = /^(?:\[([^\]\s]+)\]|([^:\s\[\]]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port > 65535) {
    throw new UsageError(
      `${name} needs HOST:PORT, got '${text}'`,
      `use e.g. ${name} 127.0.0.1:9100`,
    );
  }
  return { hostname: match[1] ?? match[2], port };
}

// A DNS name as a Host header carries it: letters, digits, dots, hyphens.
function hostName(text: string): string {
  if (
    !/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/.test(
      text,
    )
  ) {
    throw new UsageError(
      `--admin-name needs a host name, got '${text}'`,
      "use e.g. --admin-name poetry.internal",
    );
  }
  return text;
}

function cidrs(name: string, texts: string[] | undefined): string[] | undefined {
  if (texts === undefined) return undefined;
  for (const text of texts) {
    if (parseCidr(text) === undefined) {
      // fe80::1%lo works with ping and ssh, so say why it does not work here.
      const zone = /%[^/]*/.exec(text)?.[0];
      const hint = zone
        ? `zone ids like ${zone} are not supported; use e.g. ${name} ${text.replace(zone, "")}`
        : `use e.g. ${name} 127.0.0.0/8 or ${name} ::1/128`;
      throw new UsageError(`${name} needs an address or CIDR block, got '${text}'`, hint);
    }
  }
  return texts;
}
