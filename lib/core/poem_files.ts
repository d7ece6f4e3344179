/**
 * Finding poem files: what a POEM argument names (a file, or the regular
 * files of a directory), what cannot be served and why, and file-system
 * errors explained in one line with a hint.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { UsageError } from "../base/errors.ts";

const log = getLogger(["poetry", "poem"]);

/**
 * Expands POEM arguments: a file stays itself; a directory becomes every
 * regular file in it (dotfiles and subdirectories skipped), sorted by name.
 * A directory entry that cannot be served (a dangling symlink, a name that is
 * not valid UTF-8, a FIFO, socket or device) is skipped with a warning.
 *
 * @example
 * ```ts
 * import { findPoemFiles } from "./poem_files.ts";
 * const paths = await findPoemFiles(["poems/"]);
 * ```
 * @throws {UsageError} when an argument is missing or bad, or a directory has
 * no poem left.
 */
export async function findPoemFiles(args: string[]): Promise<string[]> {
  const files: string[] = [];
  for (const arg of args) {
    const found = await expandPoemArg(arg);
    if (found.paths.length === 0) throw noPoemsIn(arg, found.skipped);
    files.push(...found.paths);
  }
  return files;
}

/** What one POEM argument names. */
export interface PoemArg {
  /** Whether it is a directory, whose bad entries are skipped, not fatal. */
  directory: boolean;
  /** The poem files, in serving order. */
  paths: string[];
  /** How many entries were skipped with a warning. */
  skipped: number;
}

/** Expands one POEM argument; see {@linkcode findPoemFiles}. */
export async function expandPoemArg(arg: string): Promise<PoemArg> {
  const info = await statOrExplain(arg);
  if (!info.isDirectory) return { directory: false, paths: [arg], skipped: 0 };
  const paths = new Set<string>();
  let skipped = 0;
  try {
    for await (const entry of Deno.readDir(arg)) {
      if (entry.name.startsWith(".") || entry.isDirectory) continue;
      const path = joinPath(arg, entry.name);
      let target: Deno.FileInfo;
      try {
        // stat, not the entry's type: a symlink must lead to a file, and a
        // FIFO must be found out before anything opens it (opening one blocks).
        target = await Deno.stat(path);
      } catch (err) {
        warnSkipped(path, whyUnreachable(path, entry, err));
        skipped++;
        continue;
      }
      if (target.isFile && paths.has(path)) {
        // Two names decoded to one: a name that is not UTF-8 turned into a
        // real name spelt with U+FFFD, which is served once, under its own name.
        warnSkipped(path, NOT_UTF8);
        skipped++;
      } else if (target.isFile) {
        paths.add(path);
      } else if (!target.isDirectory) {
        warnSkipped(path, `${specialKind(target)}, not a regular file`);
        skipped++;
      }
    }
  } catch (err) {
    throw explainReadError(arg, err);
  }
  // Code-unit order, so the port a poem gets does not depend on the locale.
  const sorted = [...paths].sort((a, b) => a < b ? -1 : a > b ? 1 : 0);
  return { directory: true, paths: sorted, skipped };
}

const NOT_UTF8 = "its name is not valid UTF-8, which Deno cannot open; rename the file";

function whyUnreachable(path: string, entry: Deno.DirEntry, err: unknown): string {
  if (err instanceof Deno.errors.NotFound) {
    // readDir decodes names lossily: bytes that are not UTF-8 become U+FFFD,
    // and the decoded name leads nowhere.
    if (entry.name.includes("\uFFFD")) return NOT_UTF8;
    if (entry.isSymlink) return "a dangling symlink (its target does not exist)";
  }
  return explainReadError(path, err).message;
}

/**
 * What a file that is neither a regular file nor a directory is, for a
 * message: "a FIFO", "a socket", "a device" or "a special file".
 *
 * @example
 * ```ts
 * import { specialKind } from "./poem_files.ts";
 * console.log(specialKind(await Deno.stat("/dev/null"))); // "a device"
 * ```
 */
export function specialKind(info: Deno.FileInfo): string {
  if (info.isFifo) return "a FIFO";
  if (info.isSocket) return "a socket";
  if (info.isCharDevice || info.isBlockDevice) return "a device";
  return "a special file";
}

/** Logs a poem skipped, and why. */
export function warnSkipped(path: string, reason: string): void {
  log.warning("Skipping {poem}: {reason}.", { poem: path, reason });
}

/** The error for a directory with no poem left. */
export function noPoemsIn(dir: string, skipped: number): UsageError {
  const hint = "put poem files in it, or name a poem file instead";
  if (skipped === 0) return new UsageError(`no poems in directory ${dir}`, hint);
  const entries = skipped === 1 ? "1 entry was" : `${skipped} entries were`;
  return new UsageError(
    `no poems in directory ${dir}`,
    `${entries} skipped (the warnings say why); ${hint}`,
  );
}

/** `Deno.stat`, its failure explained. */
export async function statOrExplain(path: string): Promise<Deno.FileInfo> {
  try {
    return await Deno.stat(path);
  } catch (err) {
    throw explainReadError(path, err);
  }
}

/**
 * Whether Deno refused a path that even `--allow-read` does not open:
 * Deno 2 keeps /proc/self/*, /dev/stdin and the like for `--allow-all`
 * ("Requires all access to ..."), so a message naming `--allow-read` would
 * mislead.
 *
 * @example
 * ```ts
 * import { isKeptFromAllowRead } from "./poem_files.ts";
 * try {
 *   await Deno.stat("/proc/self/status");
 * } catch (err) {
 *   console.log(isKeptFromAllowRead(err)); // true without --allow-all
 * }
 * ```
 */
export function isKeptFromAllowRead(err: unknown): boolean {
  return err instanceof Deno.errors.NotCapable && /\ball access\b/.test(err.message);
}

/** Turns a file-system error into a one-line explanation with a hint. */
export function explainReadError(path: string, err: unknown): UsageError {
  if (err instanceof UsageError) return err;
  if (err instanceof Deno.errors.NotFound) {
    return new UsageError(
      `poem not found: ${path}`,
      "check the path; POEM is a file or a directory",
    );
  }
  if (err instanceof Deno.errors.NotCapable) {
    if (isKeptFromAllowRead(err)) {
      return new UsageError(
        `${path} is a special file; poetry serves regular files`,
        "name a poem file or a directory of poems",
      );
    }
    return new UsageError(
      `no permission to read ${path}`,
      `run again with --allow-read (for example: deno run --allow-net --allow-read main.ts ${path})`,
    );
  }
  if (err instanceof Deno.errors.PermissionDenied) {
    return new UsageError(
      `cannot read ${path}: permission denied`,
      "make the file readable to this user",
    );
  }
  const message = err instanceof Error ? err.message : String(err);
  return new UsageError(`cannot read ${path}: ${message}`);
}

function joinPath(dir: string, name: string): string {
  return /[\\/]$/.test(dir) ? dir + name : `${dir}/${name}`;
}
