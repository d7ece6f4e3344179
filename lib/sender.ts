/**
 * What happens to one connection: a {@linkcode PoemSender} writes one poem,
 * fast or paced, through the connection's writable stream, notices the
 * client leaving, and reports how many bytes went out.
 *
 * @module
 */

import type { PacedTask, PaceWheel } from "./pace.ts";
import type { PoemContent } from "./poem.ts";

/** How a transfer ended. */
export type Outcome =
  | "completed"
  | "client left"
  | "timed out"
  | "cut short"
  | "error";

/** What a transfer did, for the log. */
export interface SendResult {
  /** Bytes handed to the kernel for this client. */
  sent: number;
  /** Bytes in the poem. */
  total: number;
  /** Milliseconds from accept to close. */
  ms: number;
  /** How it ended. */
  outcome: Outcome;
  /** The error, when the outcome is `"error"`. */
  error?: string;
}

/** How a sender paces its poem. */
export interface SenderOptions {
  /** The shared slow-mode scheduler; fast mode when absent. */
  wheel?: PaceWheel;
  /** Bytes per paced write. @default {10} */
  numBytes?: number;
}

/**
 * Fast mode writes at most this much per write, so the log can say how far a
 * client got and the write timeout sees progress on big poems.
 */
const FAST_BLOCK = 256 * 1024;

// Input is read only to learn that a client left, and thrown away. Every
// connection reads into this one buffer: nobody looks at its contents, so
// sharing it costs nothing and keeps a flooding client from costing memory.
const DISCARD = new Uint8Array(64 * 1024);

/**
 * Sends one poem to one client and closes the connection. One per accepted
 * connection; the listener keeps it to drain or time it out.
 *
 * @example
 * ```ts
 * import { PoemSender } from "./sender.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const content = { path: "hello.txt", size: 6, bytes: new TextEncoder().encode("Hello\n") };
 * for await (const conn of listener) {
 *   const result = await new PoemSender(conn, content).run();
 *   console.log(result.outcome, result.sent);
 * }
 * ```
 */
export class PoemSender implements PacedTask {
  /** The connection being served. */
  readonly conn: Deno.Conn;
  /** The version of the poem this client gets, kept across reloads. */
  readonly content: PoemContent;
  /** Bytes written so far. */
  sent = 0;

  readonly #wheel?: PaceWheel;
  readonly #numBytes: number;
  readonly #started = performance.now();
  #writer?: WritableStreamDefaultWriter<Uint8Array>;
  #outcome?: Outcome;
  #error?: string;
  /** When the write now in flight began, if one is. */
  #writingSince?: number;
  #done = Promise.withResolvers<void>();
  /** The departure watch and the write in flight, if any: ops that hold the socket open. */
  #watching?: Promise<void>;
  #writing?: Promise<void>;
  #blocks?: BlockSource;
  #block: Uint8Array = new Uint8Array(0);
  #blockStart = 0;

  /** A sender for `content` on `conn`; call {@linkcode run} to start. */
  constructor(conn: Deno.Conn, content: PoemContent, options: SenderOptions = {}) {
    this.conn = conn;
    this.content = content;
    this.#wheel = options.wheel;
    this.#numBytes = options.numBytes ?? 10;
    // Only a paced run awaits #done; an abort in fast mode must not leave
    // its rejection unhandled (Deno ends the process on those).
    this.#done.promise.catch(() => {});
  }

  /** Since when (`performance.now()`) the current write has waited, if one is. */
  get writingSince(): number | undefined {
    return this.#writingSince;
  }

  /** Whether the transfer has ended. */
  get finished(): boolean {
    return this.#outcome !== undefined;
  }

  /** Sends the poem, closes the connection, and says how it went. */
  async run(): Promise<SendResult> {
    try {
      this.#blocks = blockSource(this.content, this.#blockSize());
      this.#writer = this.conn.writable.getWriter();
      if (this.#wheel || this.content.size > FAST_BLOCK) this.#watching = this.#watchForDeparture();
      if (this.#wheel) {
        this.#writeChunk();
        this.#wheel.schedule(this);
        await this.#done.promise;
      } else {
        await this.#sendFast();
      }
      // Completed before the close, which ends the departure watch too.
      this.#finish("completed");
      await this.#writer.close();
    } catch (err) {
      this.#finish(departed(err) ? "client left" : "error", err);
    } finally {
      this.#wheel?.cancel(this);
      this.#blocks?.close();
      closeQuietly(this.conn);
      // Deno frees the socket only once the ops using it have settled; wait,
      // so that when run() returns the descriptor is really closed (the
      // connection cap counts on it).
      await Promise.allSettled([this.#watching, this.#writing]);
    }
    return {
      sent: this.sent,
      total: this.content.size,
      ms: Math.round(performance.now() - this.#started),
      outcome: this.#outcome!,
      error: this.#error,
    };
  }

  /**
   * Ends the transfer now: the connection is closed and {@linkcode run}
   * reports `outcome`. Does nothing once the transfer has ended.
   */
  abort(outcome: Outcome): void {
    if (this.#finish(outcome)) {
      this.#wheel?.cancel(this);
      this.#done.reject(new Aborted());
      closeQuietly(this.conn);
    }
  }

  /** Called by the wheel once per delay: write the next chunk, if the last is done. */
  onTick(): void {
    if (this.#writingSince === undefined && !this.finished) this.#writeChunk();
  }

  async #sendFast(): Promise<void> {
    while (this.sent < this.content.size) {
      const block = await this.#nextBlock();
      for (let at = 0; at < block.length; at += FAST_BLOCK) {
        const chunk = block.subarray(at, at + FAST_BLOCK);
        this.#writingSince = performance.now();
        await (this.#writing = this.#writer!.write(chunk));
        this.#writingSince = undefined;
        this.sent += chunk.length;
      }
    }
  }

  #writeChunk(): void {
    if (this.sent >= this.content.size) {
      this.#done.resolve();
      return;
    }
    this.#writingSince = performance.now();
    const offset = this.sent - this.#blockStart;
    if (offset >= this.#block.length) {
      this.#nextBlock().then(() => this.#writeChunk(), this.#fail);
      return;
    }
    const chunk = this.#block.subarray(offset, offset + this.#numBytes);
    this.#writing = this.#writer!.write(chunk).then(() => this.#written(chunk.length), this.#fail);
  }

  #written(length: number): void {
    this.#writingSince = undefined;
    this.sent += length;
    if (this.sent >= this.content.size) this.#done.resolve();
  }

  #fail = (err: unknown): void => this.#done.reject(err);

  async #nextBlock(): Promise<Uint8Array> {
    this.#blockStart += this.#block.length;
    this.#block = await this.#blocks!.next(this.content.size - this.#blockStart);
    return this.#block;
  }

  // Paced blocks hold whole chunks, so a chunk never straddles two blocks.
  #blockSize(): number {
    if (!this.#wheel) return FAST_BLOCK;
    return Math.max(1, Math.floor(FAST_BLOCK / this.#numBytes)) * this.#numBytes;
  }

  /** Reads (and discards) until the client closes or resets. */
  async #watchForDeparture(): Promise<void> {
    try {
      while (await this.conn.read(DISCARD) !== null) {
        // The protocol is one-way: whatever a client sends is dropped.
      }
    } catch {
      // A reset, or our own close of the connection: both end the watch.
    }
    this.abort("client left");
  }

  #finish(outcome: Outcome, err?: unknown): boolean {
    if (this.#outcome !== undefined) return false;
    this.#outcome = outcome;
    this.#writingSince = undefined;
    if (outcome === "error") this.#error = err instanceof Error ? err.message : String(err);
    return true;
  }
}

/** The rejection a sender's own abort causes; its outcome is already set. */
class Aborted extends Error {}

/** Where a sender's bytes come from: the shared bytes, or the file in blocks. */
interface BlockSource {
  /** The next block, at most `remaining` bytes. */
  next(remaining: number): Promise<Uint8Array>;
  close(): void;
}

function blockSource(content: PoemContent, blockSize: number): BlockSource {
  if (content.bytes) {
    const bytes = content.bytes;
    return { next: () => Promise.resolve(bytes), close() {} };
  }
  return new FileBlocks(content.path, blockSize);
}

/** Streams a poem too large to hold in memory, one bounded block at a time. */
class FileBlocks implements BlockSource {
  readonly #path: string;
  readonly #buffer: Uint8Array;
  #file?: Deno.FsFile;

  constructor(path: string, blockSize: number) {
    this.#path = path;
    this.#buffer = new Uint8Array(blockSize);
  }

  async next(remaining: number): Promise<Uint8Array> {
    this.#file ??= await Deno.open(this.#path);
    const want = Math.min(remaining, this.#buffer.length);
    let filled = 0;
    while (filled < want) {
      const n = await this.#file.read(this.#buffer.subarray(filled, want));
      if (n === null) throw new Error(`${this.#path} shrank while being sent`);
      filled += n;
    }
    return this.#buffer.subarray(0, filled);
  }

  close(): void {
    try {
      this.#file?.close();
    } catch {
      // Already closed.
    }
  }
}

function departed(err: unknown): boolean {
  return err instanceof Aborted ||
    err instanceof Deno.errors.BrokenPipe ||
    err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.ConnectionAborted ||
    err instanceof Deno.errors.NotConnected ||
    err instanceof Deno.errors.BadResource ||
    err instanceof Deno.errors.Interrupted;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Closed already, by the writable stream or by an abort.
  }
}
