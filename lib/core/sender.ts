/**
 * What happens to one connection: a {@linkcode PoemSender} writes one poem,
 * fast or paced, closes the way HTTP servers do (a lingering close), and
 * reports how many bytes went out and how it ended.
 *
 * The protocol is one-way. Nothing is read while the poem goes out: a
 * client that sends something, or shuts down its sending side (`nc -N`,
 * `shutdown(SHUT_WR)`), still gets the whole poem. A client has left when a
 * write fails or the connection is reset; in slow mode that shows at its
 * next write at the latest.
 *
 * Bytes go out with `conn.write`, not through `conn.writable`: in the
 * benchmark's 3 KB scenario the writable stream cost 27.5 µs of CPU per
 * connection against 18.8 µs for `conn.write` (45% more connections per
 * second), and its objects would cost memory per paced client too.
 *
 * @module
 */

import { chunksOf, type PacedTask, type PaceWheel } from "./pace.ts";
import { BLOCK_SIZE, type PoemContent, type PoemReader } from "./poem.ts";
import { connectionTrace, logPacedWrite } from "../base/log.ts";

/**
 * Every way a transfer can end, in the order the logs and summaries list them.
 *
 * @example
 * ```ts
 * import { OUTCOMES } from "./sender.ts";
 * console.log(OUTCOMES.join(", "));
 * ```
 */
export const OUTCOMES = [
  "completed",
  "faulted",
  "client left",
  "timed out",
  "cut short",
  "error",
] as const;

/**
 * How a transfer ended. `completed`: every byte was handed to the kernel and the connection
 * closed without a reset. `faulted`: a fault on purpose ended it (only a faulty connection's
 * {@linkcode SenderConn.describe} says so). `client left`: a write failed or the client reset
 * the connection. `timed out`: no bytes taken for `--write-timeout`. `cut short`: a
 * shutdown's drain timeout ended it. `error`: the poem could not be read.
 *
 * @example
 * ```ts
 * import type { Outcome } from "./sender.ts";
 * const outcome: Outcome = "client left";
 * ```
 */
export type Outcome = typeof OUTCOMES[number];

/**
 * What a transfer did, for the log.
 *
 * @example
 * ```ts
 * import type { SendResult } from "./sender.ts";
 * const result: SendResult = { sent: 10, total: 500, ms: 1, outcome: "client left" };
 * ```
 */
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

/**
 * What a sender uses of its connection, so a decorator (the faults'
 * `FaultyConn`) or a `node:net` socket (a listener that can reset) can
 * stand in for a `Deno.Conn`.
 *
 * @example
 * ```ts
 * import type { SenderConn } from "./sender.ts";
 * const asSenderConn = (conn: Deno.Conn): SenderConn => conn;
 * ```
 */
export interface SenderConn
  extends Pick<Deno.Conn, "read" | "write" | "closeWrite" | "close" | "remoteAddr"> {
  /**
   * True while the connection holds bytes back on purpose (a fault's delay
   * or stall): that is not a client that stopped reading, so neither the
   * write timeout nor the end of the lingering close applies.
   */
  readonly holding?: boolean;
  /** Its own account of a finished transfer: a faulty connection adds its faults. */
  describe?(result: SendResult): SendResult;
  /** The faults on purpose this connection got (lib/fixture), by name and as the log shows them. */
  readonly faults?: readonly { readonly name: string; readonly label: string }[];
}

/** How a sender paces its poem. */
export interface SenderOptions {
  /** The shared slow-mode scheduler; fast mode when absent. */
  wheel?: PaceWheel;
  /** Bytes per paced write. @default {10} */
  numBytes?: number;
}

/**
 * How long a lingering close waits, after the last byte, for the client to
 * close its side. Apache waits 2 s; long enough for a client on any real
 * network to see the end of the poem, short enough that a client that never
 * closes holds its descriptor only briefly.
 *
 * @example
 * ```ts
 * import { LINGER_MS } from "./sender.ts";
 * console.log(LINGER_MS); // 2000
 * ```
 */
export const LINGER_MS = 2000;

// Input is read only during the lingering close, and thrown away. Every
// connection reads into this one buffer: nobody looks at its contents, so
// sharing it costs nothing and keeps a flooding client from costing memory.
const DISCARD = new Uint8Array(64 * 1024);
const EMPTY = new Uint8Array(0);

/**
 * Sends one poem to one client and closes the connection. One per accepted
 * connection; the listener keeps it to drain or time it out.
 *
 * @example
 * ```ts
 * import { PoemSender } from "./sender.ts";
 * import { memoryContent } from "./poem.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const content = memoryContent("hello.txt", new TextEncoder().encode("Hello\n"));
 * for await (const conn of listener) {
 *   const result = await new PoemSender(conn, content).run();
 *   console.log(result.outcome, result.sent);
 * }
 * ```
 */
export class PoemSender implements PacedTask {
  /** The connection being served. */
  readonly conn: SenderConn;
  /** The version of the poem this client gets, kept across reloads. */
  readonly content: PoemContent;
  /** Bytes the kernel has taken so far. */
  sent = 0;

  readonly #wheel?: PaceWheel;
  readonly #numBytes: number;
  readonly #started = performance.now();
  #outcome?: Outcome;
  #error?: string;
  /**
   * Since when the transfer has waited without progress: on a write, on a
   * read of a streamed poem, or, while lingering, on the client's close.
   */
  #waitingSince?: number;
  #lingering = false;
  #closed = false;
  #reader?: PoemReader;
  /**
   * Rejects the poem read in flight. Closing the socket ends a pending write
   * or read on it, but not a poem read from a hung disk.
   */
  #abortRead?: (reason: Aborted) => void;
  /** Told once the transfer has ended and its socket is closed. */
  #ended?: (result: SendResult, sender: PoemSender) => void;
  /** Whether the transfer is ending (no paced write starts after this). */
  #ending = false;
  /** Whether it has ended: the socket closed and its ops settled. */
  #settled = false;
  /** The paced write in flight: an op that holds the socket. */
  #writing?: Promise<void>;
  /** What the paced write in flight still has to write. */
  #pending: Uint8Array = EMPTY;
  /** Bytes the current paced tick still has to write. */
  #tickLeft = 0;
  /** The poem cut into chunks shared by all paced clients, when it is small enough. */
  #chunks?: Uint8Array[];
  /** A streamed poem's current block, and how much of it is written. */
  #block: Uint8Array = EMPTY;
  #blockAt = 0;

  /** A sender for `content` on `conn`; call {@linkcode run} to start. */
  constructor(conn: SenderConn, content: PoemContent, options: SenderOptions = {}) {
    this.conn = conn;
    this.content = content;
    this.#wheel = options.wheel;
    this.#numBytes = options.numBytes ?? 10;
  }

  /** Whether the transfer has ended. */
  get finished(): boolean {
    return this.#outcome !== undefined;
  }

  /** Sends the poem, closes the connection, and says how it went. */
  run(): Promise<SendResult> {
    return new Promise((resolve) => this.start(resolve));
  }

  /**
   * Like {@linkcode run}, but calls `ended` (once, never synchronously)
   * instead of returning a promise. A paced client waits most of its time
   * between ticks: this way it holds no promise, async function or closure
   * of its own while it waits (about 600 bytes each, at 19,000 clients).
   */
  start(ended: (result: SendResult, sender: PoemSender) => void): void {
    this.#ended = ended;
    // Aborted before it started: there is nothing to send.
    if (this.#ending) return void Promise.resolve().then(() => this.#report());
    if (this.#wheel) return this.#sendPaced();
    const { bytes } = this.content;
    (bytes ? this.#writeAll(bytes) : this.#sendStreamed()).then(
      () => this.#lastByteSent(),
      (err) => this.#end(err),
    );
  }

  /** Every byte is out: the lingering close, then the end. */
  #lastByteSent(): void {
    if (this.#ending) return;
    this.#linger().then(() => this.#end(), (err) => this.#end(err));
  }

  /** Closes the connection and reports, once; `err` is why it ended early. */
  #end(err?: unknown): void {
    if (this.#ending) return;
    this.#ending = true;
    if (err === undefined) this.#finish("completed");
    else this.#finish(departed(err) ? "client left" : "error", err);
    this.#wheel?.cancel(this);
    this.#reader?.close();
    this.#close();
    // Deno frees the socket only once the ops using it have settled; wait,
    // so that when the end is reported the descriptor is really closed (the
    // connection cap counts on it).
    const settled = () => {
      this.#settled = true;
      this.#report();
    };
    (this.#writing ?? Promise.resolve()).then(settled, settled);
  }

  #report(): void {
    const ended = this.#ended;
    if (!this.#settled || !ended) return;
    this.#ended = undefined;
    ended({
      sent: this.sent,
      total: this.content.size,
      ms: Math.round(performance.now() - this.#started),
      outcome: this.#outcome!,
      error: this.#error,
    }, this);
  }

  /**
   * Ends the transfer now: the connection is closed and {@linkcode run}
   * reports `outcome`. Once every byte is out (the lingering close), it only
   * ends the wait for the client: the transfer stays `completed`. Does
   * nothing once the transfer has ended.
   */
  abort(outcome: Outcome): void {
    if (this.#lingering) return this.#close();
    if (!this.#finish(outcome)) return;
    this.#wheel?.cancel(this);
    this.#abortRead?.(new Aborted());
    this.#close();
    // A paced transfer between ticks has nothing pending to fail: end it here.
    if (this.#wheel) this.#end(new Aborted());
  }

  /**
   * Called by the listener about twice a second: times out a transfer that
   * has waited on one write or read for more than `writeTimeoutMs` (0: never),
   * and ends a lingering close after {@linkcode LINGER_MS}; not while the
   * connection holds bytes back on purpose ({@linkcode SenderConn.holding}).
   */
  checkTimeouts(now: number, writeTimeoutMs: number): void {
    const since = this.#waitingSince;
    if (since === undefined || this.conn.holding) return;
    if (this.#lingering) {
      if (now - since >= LINGER_MS) this.#close();
    } else if (writeTimeoutMs > 0 && now - since > writeTimeoutMs) {
      this.abort("timed out");
    }
  }

  /** Called by the wheel once per delay: start the next paced write, if the last is done. */
  onTick(now: number): void {
    if (this.#waitingSince === undefined && !this.finished) this.#startTick(now);
  }

  /** Writes all of `chunk` (a write may take only part of it). */
  async #writeAll(chunk: Uint8Array): Promise<void> {
    this.#waitingSince = performance.now();
    let at = 0;
    while (at < chunk.length) {
      const n = await this.conn.write(at === 0 ? chunk : chunk.subarray(at));
      at += n;
      this.sent += n;
      // Progress restarts the write timeout; a finished write needs no clock.
      if (at < chunk.length) this.#waitingSince = performance.now();
    }
    this.#waitingSince = undefined;
  }

  async #sendStreamed(): Promise<void> {
    this.#reader = this.content.open();
    while (this.sent < this.content.size) {
      this.#waitingSince = performance.now();
      await this.#writeAll(await this.#readPoem());
    }
  }

  /**
   * After the last byte: send FIN, then read and discard until the client
   * closes (or {@linkcode LINGER_MS} passes), then close. Closing a socket
   * with unread input makes the kernel reset it, and a reset throws away the
   * bytes the client has not read yet.
   */
  async #linger(): Promise<void> {
    this.#wheel?.cancel(this);
    this.#lingering = true;
    this.#waitingSince = performance.now();
    try {
      await this.conn.closeWrite();
      while (await this.conn.read(DISCARD) !== null) {
        // Whatever a client sends is dropped.
      }
    } catch (err) {
      // Our own close ends the wait; a reset from the client is its leaving.
      if (!this.#closed) throw err;
    }
  }

  #sendPaced(): void {
    const { bytes } = this.content;
    if (bytes) this.#chunks = chunksOf(bytes, this.#numBytes);
    if (!this.#chunks) this.#reader = this.content.open();
    this.#startTick(performance.now());
    if (!this.#ending && this.sent < this.content.size) this.#wheel!.schedule(this);
  }

  // Paced writes chain callbacks rather than an async function per write:
  // one promise per write instead of two, at up to 100,000 writes a second.
  #startTick(now: number): void {
    if (this.sent >= this.content.size) return this.#lastByteSent();
    this.#waitingSince = now;
    this.#tickLeft = Math.min(this.#numBytes, this.content.size - this.sent);
    // A tick starts on a multiple of numBytes, where the shared chunks are cut.
    const shared = this.#chunks?.[this.sent / this.#numBytes];
    if (shared) {
      this.#pending = shared;
      this.#write();
    } else {
      this.#writeFromBlock();
    }
  }

  // A tick larger than a block is written from several blocks, so a huge
  // --num-bytes never means a huge buffer.
  #writeFromBlock(): void {
    if (this.#blockAt >= this.#block.length) {
      this.#readPoem().then((block) => {
        this.#block = block;
        this.#blockAt = 0;
        this.#writeFromBlock();
      }, this.#fail);
      return;
    }
    this.#pending = this.#block.subarray(this.#blockAt, this.#blockAt + this.#tickLeft);
    this.#blockAt += this.#pending.length;
    this.#write();
  }

  #write(): void {
    this.#writing = this.conn.write(this.#pending).then(this.#wrote, this.#fail);
  }

  #wrote = (n: number): void => {
    this.#writing = undefined;
    this.sent += n;
    if (connectionTrace.on) logPacedWrite(this.conn, n, this.sent, this.content.size);
    if (this.#ending) return;
    this.#tickLeft -= n;
    if (this.sent >= this.content.size) return this.#lastByteSent();
    if (n < this.#pending.length) {
      this.#pending = this.#pending.subarray(n);
      this.#waitingSince = performance.now();
      this.#write();
    } else if (this.#tickLeft > 0) {
      this.#writeFromBlock();
    } else {
      this.#waitingSince = undefined;
    }
  };

  #fail = (err: unknown): void => {
    this.#writing = undefined;
    this.#end(err);
  };

  /**
   * The next block of a streamed poem, unless the transfer is aborted first.
   * Not `Promise.race` with one promise that rejects on abort: each race
   * leaves a reaction on that promise until it settles, and a 1 GiB poem is
   * 4,096 reads (1.2 MB of heap per client by the end of the transfer).
   */
  #readPoem(): Promise<Uint8Array> {
    if (this.finished) return Promise.reject(new Aborted());
    const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>();
    this.#abortRead = reject;
    this.#reader!.next(BLOCK_SIZE).then(resolve, reject);
    return promise;
  }

  // Closing twice throws BadResource, and a thrown error per connection
  // showed up as an eighth of the CPU in a profile: close once.
  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // Already gone.
    }
  }

  #finish(outcome: Outcome, err?: unknown): boolean {
    if (this.#outcome !== undefined) return false;
    this.#outcome = outcome;
    this.#waitingSince = undefined;
    if (outcome === "error") this.#error = err instanceof Error ? err.message : String(err);
    return true;
  }
}

/** The rejection a sender's own abort causes; its outcome is already set. */
class Aborted extends Error {}

function departed(err: unknown): boolean {
  return err instanceof Aborted ||
    err instanceof Deno.errors.BrokenPipe ||
    err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.ConnectionAborted ||
    err instanceof Deno.errors.NotConnected ||
    err instanceof Deno.errors.BadResource ||
    err instanceof Deno.errors.Interrupted;
}
