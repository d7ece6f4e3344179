/**
 * The `--config` file: several listeners in one process, each with its own
 * poem, port, address, pace, faults, allow/deny and cap. JSON with comments
 * (and trailing commas), read with jsonc-parser, which knows where every
 * value sits, so each mistake names its field and its line; checked with a
 * valibot schema. See `examples/poetry.jsonc`.
 *
 * @module
 */

import { dirname, isAbsolute, join, normalize } from "node:path";
import type { Node, ParseError } from "jsonc-parser";
import type * as Valibot from "valibot";
import { parseCidr } from "../policies/access.ts";
import { UsageError } from "../base/errors.ts";
import { parseFault } from "../fixture/fault_spec.ts";
import type { Pace } from "../core/pace.ts";
import { isKeptFromAllowRead, specialKind } from "../core/poem_files.ts";
import type { ListenerSettings, ServeOptions } from "../server/options.ts";
import type { PoetryServer } from "../server/server.ts";
import { getLogger } from "@logtape/logtape";

const log = getLogger(["poetry", "config"]);

// The parser and the schema library are loaded on the first config file
// read, not at every start-up (together they cost ~40 ms of it).
function buildSchemas(v: typeof Valibot) {
  const whole = (name: string, min: number, max: number) =>
    v.pipe(
      v.number(`${name} must be a number`),
      v.integer(`${name} must be a whole number from ${min} to ${max}`),
      v.minValue(min, `${name} must be a whole number from ${min} to ${max}`),
      v.maxValue(max, `${name} must be a whole number from ${min} to ${max}`),
    );
  const seconds = (name: string) =>
    v.pipe(
      v.number(`${name} must be a number of seconds`),
      v.minValue(0, `${name} must be a number of seconds from 0 to 86400`),
      v.maxValue(86_400, `${name} must be a number of seconds from 0 to 86400`),
    );
  const nonEmpty = (name: string) =>
    v.pipe(v.string(`${name} must be a string`), v.nonEmpty(`${name} is empty`));
  const cidrs = (name: string) =>
    v.array(
      v.pipe(
        v.string(`${name} must list strings`),
        v.check((text) => parseCidr(text) !== undefined, `${name} needs addresses or CIDR blocks`),
      ),
      `${name} must be a list, e.g. ["127.0.0.0/8"]`,
    );
  const faults = v.array(
    v.pipe(
      v.string('faults must list strings like "reset-after=100"'),
      v.rawCheck(({ dataset, addIssue }) => {
        if (!dataset.typed) return;
        try {
          parseFault(dataset.value, "fault");
        } catch (err) {
          addIssue({ message: (err as Error).message });
        }
      }),
    ),
    'faults must be a list, e.g. ["reset-after=100"]',
  );

  /** Settings a listener may set, and the top level sets for all of them. */
  const common = {
    iface: v.optional(nonEmpty("iface")),
    "num-bytes": v.optional(whole("num-bytes", 1, 2 ** 30)),
    delay: v.optional(seconds("delay")),
    faults: v.optional(faults),
    allow: v.optional(cidrs("allow")),
    deny: v.optional(cidrs("deny")),
  };

  const listenerSchema = v.strictObject({
    poem: nonEmpty("poem"),
    port: v.optional(whole("port", 0, 65535)),
    "max-connections": v.optional(whole("max-connections", 1, 2 ** 31)),
    ...common,
  }, 'a listener must be an object, e.g. { "poem": "poems/a.txt", "port": 10000 }');

  const configSchema = v.strictObject({
    listeners: v.pipe(
      v.array(listenerSchema, "listeners must be a list of listeners"),
      v.minLength(1, "listeners is empty: declare at least one"),
    ),
    "max-connections": v.optional(whole("max-connections", 1, 2 ** 31)),
    "write-timeout": v.optional(seconds("write-timeout")),
    "drain-timeout": v.optional(seconds("drain-timeout")),
    seed: v.optional(whole("seed", 0, 2 ** 32 - 1)),
    ...common,
  }, 'the file must hold one object, with a "listeners" list');

  return {
    configSchema,
    listenerFields: Object.keys(listenerSchema.entries).join(", "),
    topFields: Object.keys(configSchema.entries).join(", "),
  };
}

let loaded:
  | Promise<{
    schemas: ReturnType<typeof buildSchemas>;
    v: typeof Valibot;
    jsonc: typeof import("jsonc-parser");
  }>
  | undefined;

function loadParsers() {
  return loaded ??= (async () => {
    const [v, jsonc] = await Promise.all([import("valibot"), import("jsonc-parser")]);
    return { schemas: buildSchemas(v), v, jsonc };
  })();
}

type RawConfig = Valibot.InferOutput<ReturnType<typeof buildSchemas>["configSchema"]>;
type RawListener = RawConfig["listeners"][number];

/**
 * A `--config` file, read and checked: the server-wide settings and the
 * listeners, with poem paths made relative to the working directory.
 *
 * @example
 * ```ts
 * import { parseConfig } from "./config.ts";
 * const config = await parseConfig('{ "listeners": [{ "poem": "a.txt" }] } // one', "poems/p.jsonc");
 * console.log(config.listeners[0].poem); // "poems/a.txt"
 * ```
 */
export interface PoetryConfig {
  /** The file it was read from. */
  path: string;
  /** The top level: defaults for every listener, and the server's own settings. */
  options: Omit<ServeOptions, "pace"> & { pace?: Partial<Pace> };
  /** The listeners, in the file's order, with what they set themselves. */
  listeners: (Omit<ListenerSettings, "pace"> & { pace?: Partial<Pace> })[];
}

/**
 * Reads and checks a config file.
 *
 * @example
 * ```ts
 * import { loadConfig } from "./config.ts";
 * const config = await loadConfig("examples/poetry.jsonc");
 * console.log(config.listeners.length);
 * ```
 * @throws {UsageError} when the path is not a regular file of at most 1 MiB;
 * or naming the file, the line and the field of the first mistake.
 */
export async function loadConfig(path: string): Promise<PoetryConfig> {
  return await parseConfig(await readConfigText(path), path);
}

// The largest config file read. Ten thousand listeners fit in it; a path
// that names a log, an image or /dev/zero by mistake is refused before it
// costs more memory than this.
const MAX_CONFIG_SIZE = 1024 * 1024;

/** The file's text, if it is a regular file of at most {@linkcode MAX_CONFIG_SIZE} bytes. */
async function readConfigText(path: string): Promise<string> {
  let file: Deno.FsFile | undefined;
  try {
    // Checked before it is opened: opening a FIFO waits for a writer.
    checkConfigFile(path, await Deno.stat(path));
    file = await Deno.open(path);
    // And what was opened, if the path was re-pointed in between.
    checkConfigFile(path, await file.stat());
    // Read with a bound all the same: a file may grow, and /proc's say size 0.
    const buffer = new Uint8Array(MAX_CONFIG_SIZE + 1);
    let filled = 0;
    while (filled < buffer.length) {
      const n = await file.read(buffer.subarray(filled));
      if (n === null) break;
      filled += n;
    }
    if (filled > MAX_CONFIG_SIZE) throw tooLarge(path, `more than ${MAX_CONFIG_SIZE}`);
    return new TextDecoder().decode(buffer.subarray(0, filled));
  } catch (err) {
    throw explainConfigError(path, err);
  } finally {
    file?.close();
  }
}

function checkConfigFile(path: string, info: Deno.FileInfo): void {
  if (!info.isFile) {
    const kind = info.isDirectory ? "a directory" : specialKind(info);
    throw new UsageError(`--config ${path}: ${kind}, not a regular file`, CONFIG_HINT);
  }
  if (info.size > MAX_CONFIG_SIZE) throw tooLarge(path, String(info.size));
}

const CONFIG_HINT = "name a config file, like examples/poetry.jsonc";

function tooLarge(path: string, size: string): UsageError {
  return new UsageError(
    `--config ${path}: ${size} bytes; a config file is at most ${MAX_CONFIG_SIZE}`,
    `check the path; ${CONFIG_HINT}`,
  );
}

function explainConfigError(path: string, err: unknown): UsageError {
  if (err instanceof UsageError) return err;
  if (err instanceof Deno.errors.NotFound) {
    return new UsageError(`--config ${path}: no such file`, "check the path");
  }
  if (isKeptFromAllowRead(err)) {
    return new UsageError(`--config ${path}: a special file, not a regular file`, CONFIG_HINT);
  }
  if (err instanceof Deno.errors.NotCapable) {
    return new UsageError(`no permission to read ${path}`, "run again with --allow-read");
  }
  return new UsageError(`--config ${path}: ${err instanceof Error ? err.message : err}`);
}

/**
 * Checks the text of a config file; `path` is for the messages and for
 * poem paths, which are relative to the file's directory.
 *
 * @example
 * ```ts
 * import { parseConfig } from "./config.ts";
 * try {
 *   await parseConfig('{ "listeners": [{ "poem": "a.txt", "port": 70000 }] }', "x.jsonc");
 * } catch (err) {
 *   console.log((err as Error).message); // x.jsonc:1: listeners[0].port must be a whole number from 0 to 65535, got 70000
 * }
 * ```
 * @throws {UsageError} naming the line and the field of the first mistake.
 */
export async function parseConfig(text: string, path: string): Promise<PoetryConfig> {
  const { schemas, v, jsonc } = await loadParsers();
  const deep = tooDeepAt(text, jsonc.createScanner);
  if (deep !== undefined) {
    throw new UsageError(
      `${path}:${lineOf(text, deep)}: nested deeper than ${MAX_DEPTH} levels`,
      "a config nests four: the file's object, listeners, a listener, its lists",
    );
  }
  const errors: ParseError[] = [];
  const root = jsonc.parseTree(text, errors, { allowTrailingComma: true, disallowComments: false });
  if (errors.length > 0 || !root) {
    const offset = errors[0]?.offset ?? 0;
    const what = errors[0] ? jsonc.printParseErrorCode(errors[0].error) : "nothing in it";
    throw new UsageError(
      `${path}:${lineOf(text, offset)}: not valid JSON with comments (${what})`,
      "check the brackets, commas and quotes near that line",
    );
  }
  const result = v.safeParse(schemas.configSchema, nodeValue(root), { abortEarly: false });
  if (!result.success) {
    const [issue, ...more] = result.issues;
    const keys = (issue.path ?? []).map((item) => item.key as string | number);
    const field = fieldName(keys);
    const node = nearest(root, keys, jsonc.findNodeAtLocation);
    const where = `${path}:${lineOf(text, node.offset)}`;
    const unknown = issue.kind === "schema" && issue.type === "strict_object" &&
      issue.expected === "never";
    const missing = issue.input === undefined && !unknown;
    const message = unknown
      ? `${field}: unknown field`
      : missing
      ? `${field} is missing`
      : issue.message.startsWith("fault ")
      ? `${field} ${issue.message.slice("fault ".length)}`
      : /empty/.test(issue.message)
      ? issue.message.replace(/^\S+/, field)
      : `${issue.message}, got ${JSON.stringify(issue.input)}`.replace(/^\S+/, field);
    const known = keys.length > 2 && keys[0] === "listeners"
      ? schemas.listenerFields
      : schemas.topFields;
    const hint = (unknown ? `fields here are ${known}` : "see examples/poetry.jsonc") +
      (more.length > 0
        ? ` (${more.length} more mistake${more.length > 1 ? "s" : ""} after it)`
        : "");
    throw new UsageError(`${where}: ${message}`, hint);
  }
  const base = dirname(path);
  const config = result.output;
  return {
    path,
    options: {
      iface: config.iface,
      pace: paceOf(config),
      faults: config.faults,
      allow: config.allow,
      deny: config.deny,
      maxConnections: config["max-connections"],
      writeTimeout: config["write-timeout"],
      drainTimeout: config["drain-timeout"],
      seed: config.seed,
    },
    listeners: config.listeners.map((l) => ({
      poem: isAbsolute(l.poem) ? l.poem : normalize(join(base, l.poem)),
      port: l.port,
      iface: l.iface,
      pace: paceOf(l),
      faults: l.faults,
      allow: l.allow,
      deny: l.deny,
      maxConnections: l["max-connections"],
    })),
  };
}

/**
 * How `--config` and the command line combine: the command line's options
 * replace the file's top level (they apply to every listener that does not
 * set its own), a listener's own settings win over both, and a listener's
 * `num-bytes` or `delay` alone keeps the other from the level above.
 *
 * @example
 * ```ts
 * import { combineConfig, parseConfig } from "./config.ts";
 * const config = await parseConfig('{ "delay": 0.1, "listeners": [{ "poem": "a.txt" }] }', "p.jsonc");
 * const options = combineConfig(config, { iface: "::1" });
 * console.log(options.listeners![0].pace); // { numBytes: 10, delay: 0.1 }
 * ```
 * @throws {UsageError} for `--port`, which a config file's listeners set each.
 */
export function combineConfig(config: PoetryConfig, commandLine: ServeOptions): ServeOptions {
  if (commandLine.port !== undefined) {
    throw new UsageError(
      "--port does not combine with --config",
      `set each listener's "port" in ${config.path}`,
    );
  }
  const top = config.options;
  const options: ServeOptions = { ...top, pace: complete(top.pace) };
  for (const [key, value] of Object.entries(commandLine)) {
    if (value !== undefined) (options as Record<string, unknown>)[key] = value;
  }
  const pace = commandLine.pace ?? top.pace;
  options.listeners = config.listeners.map((listener, i) => {
    const own = { ...pace, ...listener.pace };
    if (own.numBytes !== undefined && own.delay === undefined) {
      throw new UsageError(
        `${config.path}: listeners[${i}] (${listener.poem}) has num-bytes but no delay, so fast mode`,
        `add "delay": SECONDS to the listener or the top level, or --delay`,
      );
    }
    return { ...listener, pace: complete(own) };
  });
  return options;
}

function complete(pace: Partial<Pace> | undefined): Pace | undefined {
  if (pace?.numBytes === undefined && pace?.delay === undefined) return undefined;
  return { numBytes: pace.numBytes ?? 10, delay: pace.delay ?? 0 };
}

/** A pace with what was set; the unset half is filled in by {@linkcode combineConfig}. */
function paceOf(
  settings: Pick<RawConfig | RawListener, "num-bytes" | "delay">,
): Partial<Pace> | undefined {
  if (settings["num-bytes"] === undefined && settings.delay === undefined) return undefined;
  const pace: Partial<Pace> = {};
  if (settings["num-bytes"] !== undefined) pace.numBytes = settings["num-bytes"];
  if (settings.delay !== undefined) pace.delay = settings.delay;
  return pace;
}

function fieldName(keys: (string | number)[]): string {
  return keys.map((k, i) => typeof k === "number" ? `[${k}]` : i === 0 ? k : `.${k}`).join("");
}

/** The node for `keys`, or the nearest one above it that exists (a missing field's object). */
function nearest(
  root: Node,
  keys: (string | number)[],
  findNodeAtLocation: typeof import("jsonc-parser").findNodeAtLocation,
): Node {
  for (let n = keys.length; n > 0; n--) {
    const node = findNodeAtLocation(root, keys.slice(0, n));
    // An unknown key: point at the key itself, not its value.
    if (node) return node.parent?.type === "property" ? node.parent : node;
  }
  return root;
}

// The parser, nodeValue and the schema recurse once per level: a file nested
// thousands deep would overflow the stack, with no file or line to show.
const MAX_DEPTH = 64;

// jsonc-parser's SyntaxKind is a const enum, which isolated modules cannot read.
const OPEN_BRACE = 1, CLOSE_BRACE = 2, OPEN_BRACKET = 3, CLOSE_BRACKET = 4, EOF = 17;

/** Where the first bracket past {@linkcode MAX_DEPTH} opens, found without recursing. */
function tooDeepAt(
  text: string,
  createScanner: typeof import("jsonc-parser").createScanner,
): number | undefined {
  const scanner = createScanner(text, true);
  let depth = 0;
  for (let token = scanner.scan(); token !== EOF; token = scanner.scan()) {
    if (token === OPEN_BRACE || token === OPEN_BRACKET) {
      if (++depth > MAX_DEPTH) return scanner.getTokenOffset();
    } else if (token === CLOSE_BRACE || token === CLOSE_BRACKET) {
      depth--;
    }
  }
  return undefined;
}

function lineOf(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/** The plain value of a parsed tree (comments and trailing commas are gone). */
function nodeValue(node: Node): unknown {
  switch (node.type) {
    case "object":
      return Object.fromEntries(
        (node.children ?? []).map((p) => [p.children![0].value, nodeValue(p.children![1])]),
      );
    case "array":
      return (node.children ?? []).map(nodeValue);
    default:
      return node.value;
  }
}

/**
 * What SIGHUP does under `--config`: re-reads the file and applies the
 * faults and paces of the listeners there are (see
 * {@linkcode PoetryServer.reconfigure}), then re-reads the poems. A file that
 * no longer reads or checks is logged and the running settings are kept.
 *
 * @example
 * ```ts
 * import { combineConfig, loadConfig, reloadConfig } from "./config.ts";
 * import { serve } from "../server/server.ts";
 * const config = await loadConfig("examples/poetry.jsonc");
 * const server = await serve([], combineConfig(config, { iface: "127.0.0.1" }));
 * await reloadConfig(server, "examples/poetry.jsonc", { iface: "127.0.0.1" });
 * await server.shutdown();
 * ```
 */
export async function reloadConfig(
  server: PoetryServer,
  path: string,
  commandLine: ServeOptions,
): Promise<void> {
  try {
    const options = combineConfig(await loadConfig(path), commandLine);
    server.reconfigure(options.listeners!, options);
  } catch (err) {
    const hint = err instanceof UsageError && err.hint ? ` (${err.hint})` : "";
    log.error("Could not re-read {path}, keeping the running settings: {error}", {
      path,
      error: `${err instanceof Error ? err.message : err}${hint}`,
    });
  }
  await server.reload();
}
