/**
 * `--ports-file`: the listeners' addresses as JSON, for a test harness that
 * used port 0 and must learn the ports without parsing stdout.
 *
 * @module
 */

import { dirname } from "node:path";
import { UsageError } from "./errors.ts";

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
 * temporary file beside it, then renamed over it, so a harness that polls
 * for the file never reads half of it.
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
  const temp = `${dirname(path)}/.${path.split("/").pop()}.${Deno.pid}.tmp`;
  try {
    await Deno.writeTextFile(temp, JSON.stringify(entries, null, 2) + "\n");
    await Deno.rename(temp, path);
  } catch (err) {
    await Deno.remove(temp).catch(() => {});
    throw new UsageError(
      `--ports-file ${path}: cannot write it (${err instanceof Error ? err.message : err})`,
      "name a file in a directory that exists and is writable (with --allow-write)",
    );
  }
}
