/**
 * `--ports-file`: the listeners' addresses as JSON, for a test harness that
 * used port 0 and must learn the ports without parsing stdout.
 *
 * @module
 */

import { basename, dirname } from "node:path";
import { UsageError } from "../base/errors.ts";

/**
 * One line of the ports file.
 *
 * @example
 * ```ts
 * import type { ListenerAddress } from "./ports_file.ts";
 * const entry: ListenerAddress = { poem: "poems/a.txt", host: "127.0.0.1", port: 10000 };
 * ```
 */
export interface ListenerAddress {
  /** The poem's path, as the `Serving` line shows it. */
  poem: string;
  /** The address it listens on. */
  host: string;
  /** Its port. */
  port: number;
}

/**
 * Writes `[{"poem", "host", "port"}, ...]` to `path` atomically: into a
 * new temporary file beside it (an unguessable name, mode 0644), then
 * renamed over it, so a harness that polls for the file never reads half of
 * it. A symlink at `path` is replaced, not followed.
 *
 * @example
 * ```ts
 * import { writePortsFile } from "./ports_file.ts";
 * const path = await Deno.makeTempFile({ suffix: ".json" });
 * await writePortsFile(path, [{ poem: { path: "a.txt" }, addr: { hostname: "127.0.0.1", port: 1 } }]);
 * console.log(await Deno.readTextFile(path));
 * ```
 * @throws {UsageError} when the file cannot be written.
 */
export async function writePortsFile(
  path: string,
  listeners: readonly { poem: { path: string }; addr: { hostname: string; port: number } }[],
): Promise<void> {
  const entries: ListenerAddress[] = listeners.map(({ poem, addr }) => ({
    poem: poem.path,
    host: addr.hostname,
    port: addr.port,
  }));
  // The same directory as the target: a rename across file systems is a copy.
  // A name nobody can guess, created only where nothing is: a symlink planted
  // at a predictable name would have this process write through it, and the
  // rename would leave PATH that symlink.
  const temp = `${dirname(path)}/.${basename(path)}.${crypto.randomUUID()}.tmp`;
  const text = JSON.stringify(entries, null, 2) + "\n";
  try {
    await Deno.writeTextFile(temp, text, { createNew: true, mode: 0o644 });
  } catch (err) {
    // What was there already is not ours to remove.
    if (!(err instanceof Deno.errors.AlreadyExists)) await Deno.remove(temp).catch(() => {});
    throw cannotWrite(path, err);
  }
  try {
    await Deno.rename(temp, path);
  } catch (err) {
    await Deno.remove(temp).catch(() => {});
    throw cannotWrite(path, err);
  }
}

function cannotWrite(path: string, err: unknown): UsageError {
  return new UsageError(
    `--ports-file ${path}: cannot write it (${err instanceof Error ? err.message : err})`,
    "name a file in a directory that exists and is writable (with --allow-write)",
  );
}
