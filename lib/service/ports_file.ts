/**
 * `--ports-file`: the listeners' addresses as JSON, for a test harness that
 * used port 0 and must learn the ports without parsing stdout.
 *
 * @module
 */

import { basename, dirname } from "node:path";
import { UsageError } from "../base/errors.ts";

/**
 * One entry of the ports file.
 *
 * @example
 * ```ts
 * import type { ListenerAddress } from "./ports_file.ts";
 * const entry: ListenerAddress = {
 *   poem: "poems/a.txt",
 *   host: "127.0.0.1",
 *   port: 10000,
 *   listener: 0,
 *   faults: ["reset-after=100"],
 * };
 * ```
 */
export interface ListenerAddress {
  /** The poem's path, as the `Serving` line shows it. */
  poem: string;
  /** The address it listens on. */
  host: string;
  /** Its port. */
  port: number;
  /**
   * Its index, in the order of the `Serving` lines: under `--config`, its
   * place in the file's `listeners`. Two listeners of one poem differ here.
   */
  listener: number;
  /** Its faults as specs (`"reset-after=100,probability=0.3"`); empty for none. */
  faults: string[];
}

/** What {@linkcode PortsFile.write} lists: a server's listeners and their faults. */
export interface Listed {
  /** The listeners, in order. */
  readonly listeners: readonly {
    poem: { path: string };
    addr: { hostname: string; port: number };
  }[];
  /** The fault specs listener `index` runs with. */
  faultSpecs(index: number): string[];
}

/**
 * The ports file: checked before anything binds, written once every
 * listener is up, removed at exit so that a harness never reads a stale one.
 *
 * Writing it takes a temporary file beside PATH renamed over it, and Deno's
 * rename needs read access to the temporary file as well as write: so
 * PATH's directory needs both (`--allow-write=DIR --allow-read=DIR`).
 *
 * @example
 * ```ts
 * import { PortsFile } from "./ports_file.ts";
 * const dir = await Deno.makeTempDir();
 * const file = PortsFile.check(`${dir}/ports.json`);
 * await file.write({
 *   listeners: [{ poem: { path: "a.txt" }, addr: { hostname: "127.0.0.1", port: 1 } }],
 *   faultSpecs: () => [],
 * });
 * console.log(await Deno.readTextFile(`${dir}/ports.json`));
 * file.remove();
 * ```
 */
export class PortsFile {
  /** The file's path, as given. */
  readonly path: string;
  /** What the file written is (device and inode), to remove only that. */
  #written?: string;
  readonly #onUnload = () => this.remove();

  private constructor(path: string) {
    this.path = path;
  }

  /**
   * Checks that `path` can be written (permissions, directory) before the
   * server binds anything: a missing permission is bad input, not a server
   * that starts, serves and stops.
   * @throws {UsageError} saying which permission or directory is missing.
   */
  static check(path: string): PortsFile {
    const dir = dirname(path);
    const missing = (["write", "read"] as const).filter((name) => {
      const descriptor = { name, path: dir };
      const { state } = Deno.permissions.querySync(descriptor);
      // "prompt": ask as Deno would at the write (a terminal), or refuse.
      return (state === "prompt" ? Deno.permissions.requestSync(descriptor).state : state) !==
        "granted";
    });
    if (missing.length > 0) {
      throw new UsageError(
        `--ports-file ${path}: no permission to ${
          missing.join(" and ")
        } ${dir} (a temporary file there is renamed over PATH)`,
        `run again with ${missing.map((name) => `--allow-${name}=${dir}`).join(" ")}`,
      );
    }
    if (!existsDir(dir)) {
      throw new UsageError(
        `--ports-file ${path}: ${dir} is not an existing directory`,
        "name a file in a directory that exists",
      );
    }
    let info: Deno.FileInfo | undefined;
    try {
      info = Deno.lstatSync(path);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw cannotWrite(path, err);
    }
    if (info?.isDirectory) {
      throw new UsageError(`--ports-file ${path}: a directory`, "name a file, e.g. ports.json");
    }
    return new PortsFile(path);
  }

  /**
   * Writes `[{"poem", "host", "port", "listener", "faults"}, ...]` atomically:
   * into a new temporary file beside PATH (an unguessable name, mode 0644),
   * then renamed over it, so a harness that polls for the file never reads
   * half of it. A symlink at PATH is replaced, not followed.
   * @throws {UsageError} when the file cannot be written.
   */
  async write(server: Listed): Promise<void> {
    const entries: ListenerAddress[] = server.listeners.map(({ poem, addr }, listener) => ({
      poem: poem.path,
      host: addr.hostname,
      port: addr.port,
      listener,
      faults: server.faultSpecs(listener),
    }));
    const path = this.path;
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
      this.#written = identity(await Deno.lstat(path));
    } catch (err) {
      await Deno.remove(temp).catch(() => {});
      throw cannotWrite(path, err);
    }
    // Deno.exit (a second Ctrl-C) runs the unload handlers.
    globalThis.addEventListener("unload", this.#onUnload);
  }

  /** Removes the file, if it is still the one written (after the drain, at exit). */
  remove(): void {
    const written = this.#written;
    this.#written = undefined;
    globalThis.removeEventListener("unload", this.#onUnload);
    if (written === undefined) return;
    try {
      if (identity(Deno.lstatSync(this.path)) === written) Deno.removeSync(this.path);
    } catch {
      // Gone already, or replaced by someone else's: not ours to remove.
    }
  }
}

function identity(info: Deno.FileInfo): string {
  return `${info.dev}:${info.ino}`;
}

function existsDir(dir: string): boolean {
  try {
    return Deno.statSync(dir).isDirectory;
  } catch {
    return false;
  }
}

function cannotWrite(path: string, err: unknown): UsageError {
  return new UsageError(
    `--ports-file ${path}: cannot write it (${err instanceof Error ? err.message : err})`,
    "name a file in a directory that exists and is writable",
  );
}
