/**
 * The `--config` file: several listeners in one process, each with its own
 * poem, port, address, pace, faults, allow/deny and cap. JSON with comments
 * (and trailing commas), read with jsonc-parser, which knows where every
 * value sits, so each mistake names its field and its line; checked with a
 * valibot schema. See `examples/poetry.jsonc`.
 *
 * @module
 */

import { dirname, isAbsolute, join, normalize, resolve } from "node:path";
import type { Node, ParseError } from "jsonc-parser";
import { UsageError } from "../base/errors.ts";
import type { Pace } from "../core/pace.ts";
import { explainReadError, isKeptFromAllowRead, specialKind } from "../core/poem_files.ts";
import type { ListenerSettings, ServeOptions } from "../server/options.ts";
import type { PoetryServer } from "../server/server.ts";
import type { ReloadResult } from "../server/summary.ts";
import { getLogger } from "@logtape/logtape";
import { loadParsers, type RawConfig, type RawListener } from "./config_schema.ts";

const log = getLogger(["poetry", "config"]);

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
  /** Each listener's poem as the file spells it, and its line, for messages. */
  poems: { written: string; line: number }[];
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
  const config = await parseConfig(await readConfigText(path), path);
  await checkPoems(config);
  return config;
}

/**
 * At start-up, a listener's poem that cannot be found is a mistake in the
 * file: say where, as written and as resolved (against the file's
 * directory, not the working one). On SIGHUP it is the poem's reload that
 * fails, and the other listeners' settings still apply.
 */
async function checkPoems(config: PoetryConfig): Promise<void> {
  for (const [i, listener] of config.listeners.entries()) {
    const poem = listener.poem as string;
    const { written, line } = config.poems[i];
    try {
      await Deno.stat(poem);
    } catch (err) {
      const where = `${config.path}:${line}: listeners[${i}].poem`;
      if (!(err instanceof Deno.errors.NotFound)) {
        const explained = explainReadError(poem, err);
        throw new UsageError(`${where}: ${explained.message}`, explained.hint);
      }
      throw new UsageError(
        `${where}: poem not found: ${written} (looked for ${resolve(poem)})`,
        `a poem's path is relative to the config file's directory, ${
          resolve(dirname(config.path))
        }`,
      );
    }
  }
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
  const names = config.listeners.map((l) => l.name).filter((name) => name !== undefined);
  const twice = names.find((name, i) => names.indexOf(name) !== i);
  if (twice !== undefined) {
    throw new UsageError(`${path}: two listeners are named ${twice}`, "give each its own name");
  }
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
      name: l.name,
      port: l.port,
      iface: l.iface,
      pace: paceOf(l),
      faults: l.faults,
      allow: l.allow,
      deny: l.deny,
      maxConnections: l["max-connections"],
    })),
    poems: config.listeners.map((l, i) => ({
      written: l.poem,
      line: lineOf(text, jsonc.findNodeAtLocation(root, ["listeners", i, "poem"])?.offset ?? 0),
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
): Promise<ReloadResult> {
  let reconfigured: number | false = false;
  try {
    // Not loadConfig: a poem missing now fails its own reload below, and
    // must not keep the other listeners' new settings from applying.
    const config = await parseConfig(await readConfigText(path), path);
    const options = combineConfig(config, commandLine);
    reconfigured = server.reconfigure(options.listeners!, options);
  } catch (err) {
    const hint = err instanceof UsageError && err.hint ? ` (${err.hint})` : "";
    log.error("Could not re-read {path}, keeping the running settings: {error}", {
      path,
      error: `${err instanceof Error ? err.message : err}${hint}`,
    });
  }
  return { ...await server.reload(), reconfigured };
}
