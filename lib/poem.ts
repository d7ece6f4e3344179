/**
 * Poems: what every connection on a listener shares. The bytes are read once
 * and handed to every sender as the same `Uint8Array` (never copied per
 * connection); a reload swaps in new bytes for later connections only.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { UsageError } from "./errors.ts";

/**
 * Poems larger than this are streamed from disk in bounded blocks instead of
 * held in memory. 64 MiB keeps a 16 MB poem shared in memory (200 stalled
 * readers then cost no copy each), while a 1 GiB poem costs one block per
 * client instead of a gigabyte of heap.
 *
 * @example
 * ```ts
 * import { STREAM_THRESHOLD } from "./poem.ts";
 * console.log(STREAM_THRESHOLD / 2 ** 20); // 64 (MiB)
 * ```
 */
export const STREAM_THRESHOLD = 64 * 1024 * 1024;

/**
 * One version of a poem, as a sender sees it for its whole transfer.
 *
 * @example
 * ```ts
 * import type { PoemContent } from "./poem.ts";
 * const content: PoemContent = { path: "inline", size: 3, bytes: new TextEncoder().encode("Hi\n") };
 * ```
 */
export interface PoemContent {
  /** The file it came from. */
  readonly path: string;
  /** Its length in bytes. */
  readonly size: number;
  /** The bytes, or `undefined` when the poem is streamed from disk. */
  readonly bytes?: Uint8Array;
}

/**
 * A poem file, loaded once and reloadable.
 *
 * @example
 * ```ts
 * import { Poem } from "./poem.ts";
 * const poem = await Poem.load("poems/ode-to-the-socket.txt");
 * console.log(poem.content.size);
 * ```
 */
export class Poem {
  /** The file the poem is read from. */
  readonly path: string;
  #content: PoemContent;

  private constructor(path: string, content: PoemContent) {
    this.path = path;
    this.#content = content;
  }

  /**
   * Reads a poem file.
   * @throws {UsageError} when the file is missing, unreadable or not a file.
   */
  static async load(path: string): Promise<Poem> {
    return new Poem(path, await readContent(path));
  }

  /** The current version; a sender keeps the one it started with. */
  get content(): PoemContent {
    return this.#content;
  }

  /**
   * Re-reads the file. On failure the old content stays and the error is
   * thrown for the caller to report.
   * @returns whether the bytes changed.
   */
  async reload(): Promise<boolean> {
    const next = await readContent(this.path);
    const changed = next.size !== this.#content.size || !next.bytes ||
      !this.#content.bytes || !view(next.bytes).equals(this.#content.bytes);
    this.#content = next;
    return changed;
  }
}

/**
 * Expands POEM arguments: a file stays itself; a directory becomes every
 * regular file in it (dotfiles skipped), sorted by name.
 *
 * @example
 * ```ts
 * import { findPoemFiles } from "./poem.ts";
 * const paths = await findPoemFiles(["poems/"]);
 * ```
 * @throws {UsageError} when an argument is missing or a directory is empty.
 */
export async function findPoemFiles(args: string[]): Promise<string[]> {
  const files: string[] = [];
  for (const arg of args) {
    const info = await statOrExplain(arg);
    if (!info.isDirectory) {
      files.push(arg);
      continue;
    }
    const inDir: string[] = [];
    try {
      for await (const entry of Deno.readDir(arg)) {
        if (entry.name.startsWith(".")) continue;
        const path = joinPath(arg, entry.name);
        // readDir reports a symlink as a symlink; follow it to see a file.
        if (entry.isFile || (entry.isSymlink && (await statOrExplain(path)).isFile)) {
          inDir.push(path);
        }
      }
    } catch (err) {
      throw explainReadError(arg, err);
    }
    if (inDir.length === 0) {
      throw new UsageError(
        `no poems in directory ${arg}`,
        "put poem files in it, or name a poem file instead",
      );
    }
    // Code-unit order, so the port a poem gets does not depend on the locale.
    files.push(...inDir.sort((a, b) => a < b ? -1 : a > b ? 1 : 0));
  }
  return files;
}

/**
 * Loads every poem the arguments name, in order.
 *
 * @example
 * ```ts
 * import { loadPoems } from "./poem.ts";
 * const poems = await loadPoems(["poems/"]);
 * console.log(poems.map((p) => p.path));
 * ```
 * @throws {UsageError} as {@linkcode findPoemFiles} and {@linkcode Poem.load}.
 */
export async function loadPoems(args: string[]): Promise<Poem[]> {
  const poems: Poem[] = [];
  for (const path of await findPoemFiles(args)) poems.push(await Poem.load(path));
  return poems;
}

async function readContent(path: string): Promise<PoemContent> {
  const info = await statOrExplain(path);
  if (!info.isFile) {
    throw new UsageError(
      `${path} is not a regular file`,
      "name a poem file or a directory of poems",
    );
  }
  if (info.size > STREAM_THRESHOLD) return { path, size: info.size };
  try {
    const bytes = await Deno.readFile(path);
    return { path, size: bytes.length, bytes };
  } catch (err) {
    throw explainReadError(path, err);
  }
}

async function statOrExplain(path: string): Promise<Deno.FileInfo> {
  try {
    return await Deno.stat(path);
  } catch (err) {
    throw explainReadError(path, err);
  }
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

// node:buffer's equals compares natively; a Buffer view of the same memory,
// not a copy (Buffer.from(uint8Array) would copy the poem).
function view(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
