/**
 * Poems: what every connection on a listener shares. The bytes are read once
 * and handed to every sender as the same `Uint8Array` (never copied per
 * connection); a reload swaps in new bytes for later connections only.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { UsageError } from "../base/errors.ts";
import {
  expandPoemArg,
  explainReadError,
  noPoemsIn,
  statOrExplain,
  warnSkipped,
} from "./poem_files.ts";

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
 * Largest block a streamed poem is read in, whatever `--num-bytes` asks
 * for: a reader's memory stays bounded (a paced write of a gigabyte is sent
 * from several blocks, not one gigabyte-sized buffer per client). Each read
 * and write of a block is an op through Deno's event loop, so fewer, larger
 * blocks cost less CPU per byte; above 1 MiB they only cost memory
 * (docs/benchmark.md). With many readers, each gets a smaller share of
 * {@linkcode STREAM_BUDGET} instead.
 *
 * @example
 * ```ts
 * import { BLOCK_SIZE } from "./poem.ts";
 * console.log(BLOCK_SIZE / 1024); // 1024 (KiB)
 * ```
 */
export const BLOCK_SIZE = 1024 * 1024;

/**
 * What the blocks of all streamed poems' readers in one thread take together
 * before each reader's block shrinks below {@linkcode BLOCK_SIZE}: up to 16
 * readers get 1 MiB each, 1,000 get 16 KiB each (16 MiB in all). Below
 * {@linkcode MIN_BLOCK_SIZE} a block does not shrink: then memory grows by
 * that much per reader (see docs/operations.md).
 *
 * @example
 * ```ts
 * import { STREAM_BUDGET } from "./poem.ts";
 * console.log(STREAM_BUDGET / 2 ** 20); // 16 (MiB)
 * ```
 */
export const STREAM_BUDGET = 16 * 1024 * 1024;

/**
 * Smallest block a streamed poem is read in, however many readers share
 * {@linkcode STREAM_BUDGET}: smaller reads would cost a system call per few
 * bytes sent.
 *
 * @example
 * ```ts
 * import { MIN_BLOCK_SIZE } from "./poem.ts";
 * console.log(MIN_BLOCK_SIZE / 1024); // 16 (KiB)
 * ```
 */
export const MIN_BLOCK_SIZE = 16 * 1024;

/**
 * The block size each of `readers` readers of streamed poems reads in: its
 * share of {@linkcode STREAM_BUDGET}, in whole multiples of
 * {@linkcode MIN_BLOCK_SIZE}, between that and {@linkcode BLOCK_SIZE}.
 *
 * @example
 * ```ts
 * import { streamBlockSize } from "./poem.ts";
 * console.log(streamBlockSize(4) / 1024); // 1024 (KiB)
 * console.log(streamBlockSize(1000) / 1024); // 16 (KiB)
 * ```
 */
export function streamBlockSize(readers: number): number {
  const share = Math.floor(STREAM_BUDGET / Math.max(1, readers) / MIN_BLOCK_SIZE) * MIN_BLOCK_SIZE;
  return Math.min(BLOCK_SIZE, Math.max(MIN_BLOCK_SIZE, share));
}

/** Readers of streamed poems open in this thread, every poem and version. */
let streamReaders = 0;

/**
 * One version of a poem, as a sender sees it for its whole transfer: the
 * bytes in memory, or a file opened when the version was read, so that a
 * file renamed over it, deleted or reloaded later does not change what a
 * client already connected gets.
 *
 * @example
 * ```ts
 * import { memoryContent, type PoemContent } from "./poem.ts";
 * const content: PoemContent = memoryContent("inline", new TextEncoder().encode("Hi\n"));
 * ```
 */
export interface PoemContent {
  /** The file it came from. */
  readonly path: string;
  /** Its length in bytes. */
  readonly size: number;
  /** The bytes, or `undefined` when the poem is streamed from disk. */
  readonly bytes?: Uint8Array;
  /** A reader of this version from its first byte; close it when done. */
  open(): PoemReader;
}

/**
 * Reads one version of a poem from start to end, for one client.
 *
 * @example
 * ```ts
 * import { memoryContent } from "./poem.ts";
 * const reader = memoryContent("inline", new TextEncoder().encode("Hello\n")).open();
 * const first = await reader.next(4); // "Hell"
 * reader.close();
 * ```
 */
export interface PoemReader {
  /**
   * The next bytes, at most `max` and at most {@linkcode BLOCK_SIZE} (or the
   * reader's share, {@linkcode streamBlockSize}) for a streamed poem; empty at
   * the end. A block read from disk is only valid until the next call.
   * @throws {Error} when a streamed file shrank or cannot be read.
   */
  next(max: number): Promise<Uint8Array>;
  /** Lets go of the version (a superseded file is closed by its last reader). */
  close(): void;
}

/**
 * A version held in memory: every reader gets views of the same bytes.
 *
 * @example
 * ```ts
 * import { memoryContent } from "./poem.ts";
 * const content = memoryContent("inline", new TextEncoder().encode("Hi\n"));
 * console.log(content.size); // 3
 * ```
 */
export function memoryContent(path: string, bytes: Uint8Array): PoemContent {
  return {
    path,
    size: bytes.length,
    bytes,
    open() {
      let at = 0;
      return {
        next(max) {
          const block = bytes.subarray(at, at + max);
          at += block.length;
          return Promise.resolve(block);
        },
        close() {},
      };
    },
  };
}

/**
 * A version streamed from a file opened when it was read. Readers share the
 * one handle; the handle closes when the version is superseded and its last
 * reader is done.
 */
class FileContent implements PoemContent {
  readonly path: string;
  readonly size: number;
  readonly bytes = undefined;
  /** See {@linkcode fileIdentity}. */
  readonly identity: string;
  readonly #file: Deno.FsFile;
  #readers = 0;
  #current = true;
  // Deno.FsFile has no positional read: a seek and the read after it must
  // not interleave with another reader's, so reads of one version queue.
  #queue: Promise<unknown> = Promise.resolve();

  constructor(path: string, file: Deno.FsFile, info: Deno.FileInfo) {
    this.path = path;
    this.size = info.size;
    this.identity = fileIdentity(info);
    this.#file = file;
  }

  open(): PoemReader {
    this.#readers++;
    streamReaders++;
    let at = 0;
    let buffer: Uint8Array | undefined;
    let closed = false;
    return {
      next: async (max) => {
        const size = Math.min(streamBlockSize(streamReaders), this.size);
        const want = Math.min(max, size, this.size - at);
        if (want <= 0) return new Uint8Array(0);
        // The buffer follows the reader's share: it shrinks as readers
        // arrive and grows back as they leave.
        if (buffer?.length !== size) buffer = new Uint8Array(size);
        const block = buffer.subarray(0, want);
        await this.#read(at, block);
        at += want;
        return block;
      },
      close: () => {
        if (closed) return;
        closed = true;
        streamReaders--;
        if (--this.#readers === 0 && !this.#current) this.#close();
      },
    };
  }

  /** Marks this version as replaced; it closes once nobody reads it. */
  retire(): void {
    this.#current = false;
    if (this.#readers === 0) this.#close();
  }

  #read(offset: number, into: Uint8Array): Promise<void> {
    const read = this.#queue.then(async () => {
      // lseek only sets the position (no I/O): done in place, it saves the
      // async seek's trip to Deno's blocking thread pool and back.
      this.#file.seekSync(offset, Deno.SeekMode.Start);
      for (let filled = 0; filled < into.length;) {
        const n = await this.#file.read(into.subarray(filled));
        if (n === null) throw new Error(`${this.path} shrank while being sent`);
        filled += n;
      }
    });
    this.#queue = read.catch(() => {});
    return read;
  }

  #close(): void {
    try {
      this.#file.close();
    } catch {
      // Closed already.
    }
  }
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
  /** The file the current version was read from, as {@linkcode fileIdentity} says. */
  #identity: string;
  /** The re-read in progress, and the one more a call during it asked for. */
  #reloading?: Promise<boolean>;
  #reloadAgain?: Promise<boolean>;

  private constructor(path: string, { content, identity }: ReadResult) {
    this.path = path;
    this.#content = content;
    this.#identity = identity;
  }

  /**
   * Reads a poem file.
   * @throws {UsageError} when the file is missing, unreadable or not a file.
   */
  static async load(path: string): Promise<Poem> {
    return new Poem(path, (await readContent(path))!);
  }

  /** The current version; a sender keeps the one it started with. */
  get content(): PoemContent {
    return this.#content;
  }

  /**
   * Re-reads the file. On failure the old content stays and the error is
   * thrown for the caller to report. Re-reads of one poem never overlap: a
   * call while one runs schedules exactly one more, shared by every call
   * made meanwhile (a burst of signals costs two reads, not a hundred).
   * @returns whether the poem changed.
   */
  reload(): Promise<boolean> {
    if (!this.#reloading) {
      this.#reloading = this.#reloadOnce().finally(() => this.#reloading = undefined);
      return this.#reloading;
    }
    this.#reloadAgain ??= this.#reloading.catch(() => {}).then(() => {
      this.#reloadAgain = undefined;
      return this.reload();
    });
    return this.#reloadAgain;
  }

  async #reloadOnce(): Promise<boolean> {
    const next = await readContent(this.path, this.#identity);
    if (!next) return false; // the same file, untouched: not even read again
    const old = this.#content;
    this.#identity = next.identity;
    if (next.content.bytes && old.bytes && view(next.content.bytes).equals(old.bytes)) return false;
    this.#content = next.content;
    if (old instanceof FileContent) old.retire();
    return true;
  }
}

/**
 * Loads every poem the arguments name, in order. A poem in a directory that
 * fails to load is skipped with a warning; one named directly fails at once.
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
  for (const arg of args) {
    const { directory, paths, skipped } = await expandPoemArg(arg);
    if (!directory) {
      poems.push(await Poem.load(arg));
      continue;
    }
    let failed = 0;
    for (const path of paths) {
      try {
        poems.push(await Poem.load(path));
      } catch (err) {
        // A file problem skips the poem; anything else is a bug to surface.
        if (!(err instanceof UsageError)) throw err;
        warnSkipped(path, err.message);
        failed++;
      }
    }
    if (failed === paths.length) throw noPoemsIn(arg, skipped + failed);
  }
  return poems;
}

/** A version and the file it came from. */
interface ReadResult {
  content: PoemContent;
  identity: string;
}

/**
 * Device, inode, size and modification time: when a re-read finds them all
 * the same, the file is the one already loaded (a burst of reloads then
 * costs a stat each, not a copy of the poem each).
 */
function fileIdentity(info: Deno.FileInfo): string {
  return `${info.dev}:${info.ino}:${info.size}:${info.mtime?.getTime()}`;
}

/** Reads the poem at `path`, or `undefined` when it is still the file `unchanged` names. */
async function readContent(path: string, unchanged?: string): Promise<ReadResult | undefined> {
  const info = await statOrExplain(path);
  if (!info.isFile) {
    throw new UsageError(
      `${path} is not a regular file`,
      "name a poem file or a directory of poems",
    );
  }
  if (fileIdentity(info) === unchanged) return undefined;
  try {
    if (info.size <= STREAM_THRESHOLD) {
      return {
        content: memoryContent(path, await Deno.readFile(path)),
        identity: fileIdentity(info),
      };
    }
    // The version is the file opened now: what its handle reads stays the
    // same when another file is renamed over the path or it is deleted.
    const file = await Deno.open(path);
    const opened = await file.stat();
    if (!opened.isFile) {
      file.close();
      throw new UsageError(`${path} is not a regular file`, "name a poem file");
    }
    const content = new FileContent(path, file, opened);
    return { content, identity: content.identity };
  } catch (err) {
    throw explainReadError(path, err);
  }
}

// node:buffer's equals compares natively; a Buffer view of the same memory,
// not a copy (Buffer.from(uint8Array) would copy the poem).
function view(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
