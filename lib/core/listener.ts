/**
 * One listening socket and its lifecycle: the accept loop (which survives
 * accept errors), the connection cap, access control, the clocks of its
 * transfers (write timeout, lingering close), and draining on shutdown.
 * What is sent is the sender's business.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { formatAddress } from "../base/address.ts";
import { logRecord } from "../base/log.ts";
import { Acceptor } from "./accept.ts";
import type { ConnectionCap } from "./cap.ts";
import { type Decision, PoemFactory, Refusal, type SenderFactory } from "./connection.ts";
import type { Pace, PaceWheel } from "./pace.ts";
import type { Poem } from "./poem.ts";
import { type Outcome, OUTCOMES, type PoemSender, type SendResult } from "./sender.ts";

const log = getLogger(["poetry", "listener"]);
const connectionLog = getLogger(["poetry", "connection"]);

/** How often the listener checks its transfers' clocks. */
const SWEEP_MS = 500;

/**
 * Transfers by how they ended, and clients denied by `--allow`/`--deny`.
 *
 * @example
 * ```ts
 * import { emptyCounts, type TransferCounts } from "./listener.ts";
 * const counts: TransferCounts = emptyCounts();
 * counts.completed++;
 * ```
 */
export type TransferCounts = Record<Outcome | "denied", number>;

/**
 * The keys of {@linkcode TransferCounts}, in the order the summary and the
 * stats record name them.
 *
 * @example
 * ```ts
 * import { COUNTED } from "./listener.ts";
 * console.log(COUNTED.join(", ")); // completed, client left, ..., denied
 * ```
 */
export const COUNTED: readonly (keyof TransferCounts)[] = [...OUTCOMES, "denied"];

/**
 * Counts of zero for every outcome.
 *
 * @example
 * ```ts
 * import { emptyCounts } from "./listener.ts";
 * console.log(emptyCounts().completed); // 0
 * ```
 */
export function emptyCounts(): TransferCounts {
  return Object.fromEntries(COUNTED.map((key) => [key, 0])) as TransferCounts;
}

/** What a listener needs besides its socket and poem. */
export interface PoemListenerOptions {
  /** Shared slow-mode scheduler; fast mode when absent. */
  wheel?: PaceWheel;
  /** Bytes per paced write. @default {10} */
  numBytes?: number;
  /** Shared cap on transfers in progress; none when absent. */
  cap?: ConnectionCap;
  /** Drop a client that takes no bytes for this many seconds; 0 disables. @default {30} */
  writeTimeout?: number;
  /** Every connection starts with a PROXY protocol header naming the client. @default {false} */
  proxyProtocol?: boolean;
  /** Told of every transfer's start and end, for statistics; none when absent. */
  observer?: TransferObserver;
}

/**
 * Watches transfers for statistics and metrics. Both calls happen on the
 * connection's own path, so they must be cheap: count, do not compute.
 *
 * @example
 * ```ts
 * import type { TransferObserver } from "./listener.ts";
 * let sent = 0;
 * const observer: TransferObserver = {
 *   transferStarted() {},
 *   transferEnded(_listener, result) {
 *     sent += result.sent;
 *   },
 * };
 * ```
 */
export interface TransferObserver {
  /** A client was accepted, let through, and its sender made; called before its first byte. */
  transferStarted(listener: PoemListener, sender: PoemSender, peer: Deno.NetAddr): void;
  /**
   * A transfer was recorded (counted in {@linkcode PoemListener.counts} and
   * logged). `sender` is the one `transferStarted` was given; absent for a
   * client cut short before it had one (shutdown during a wait at the cap).
   */
  transferEnded(listener: PoemListener, result: SendResult, sender?: PoemSender): void;
}

/**
 * A transfer in flight, as {@linkcode PoemListener.transfers} shows it.
 *
 * @example
 * ```ts
 * import type { TransferInFlight } from "./listener.ts";
 * const show = (t: TransferInFlight) => `${t.peer.port}: ${t.sent} of ${t.total}`;
 * ```
 */
export interface TransferInFlight {
  /** The sender, the same object {@linkcode TransferObserver.transferStarted} was given. */
  sender: PoemSender;
  /** The client. */
  peer: Deno.NetAddr;
  /** Bytes the kernel has taken so far. */
  sent: number;
  /** Bytes in the version of the poem this client gets. */
  total: number;
}

// The connection record's templates, made once: logRecord caches a
// template's parts by the string, and a string built per record would be
// hashed anew each time. Index: 1 for an error, + 2 with faults, + 2 more
// when a reset may have dropped bytes the kernel took ("at most").
const RECORD = "{peer} got {sent} of {total} bytes of {poem} in {ms} ms: ";
const AT_MOST = "{peer} got at most {sent} of {total} bytes of {poem} in {ms} ms: ";
const RECORD_TEMPLATES = [
  `${RECORD}{outcome}.`,
  `${RECORD}error ({error}).`,
  `${RECORD}{outcome}. Faults: {faults}.`,
  `${RECORD}error ({error}). Faults: {faults}.`,
  `${AT_MOST}{outcome}. Faults: {faults}.`,
  `${AT_MOST}error ({error}). Faults: {faults}.`,
];

/**
 * Serves one poem on one listening socket: the tutorial's `listenTCP`. It
 * accepts, holds each client to the cap, lets its factory decide, watches the
 * transfers' clocks, and records each one once; what is sent is the
 * sender's business, and who is served the factory's.
 *
 * @example
 * ```ts
 * import { Poem } from "./poem.ts";
 * import { PoemListener } from "./listener.ts";
 * const poem = await Poem.load("poems/ode-to-the-socket.txt");
 * const listener = new PoemListener(Deno.listen({ hostname: "127.0.0.1", port: 0 }), poem);
 * const serving = listener.serve();
 * listener.close();
 * await listener.drain(1);
 * await serving;
 * ```
 */
export class PoemListener {
  /** The poem this listener serves. */
  readonly poem: Poem;
  /** The address it listens on. */
  readonly addr: Deno.NetAddr;
  /** Transfers so far, by outcome. */
  readonly counts: TransferCounts = emptyCounts();
  /** Connections closed for a missing, malformed or slow PROXY header. */
  badProxyHeaders = 0;
  /** Transfers that got each fault on purpose (their connection's `faults`), by fault name. */
  readonly faultsApplied: Map<string, number> = new Map();
  /**
   * Decides each new connection (lib/core/connection.ts): the poem's own
   * factory, wrapped by the PROXY header, the access list and the faults when
   * they apply. A reload that changes them puts a new chain here.
   */
  factory: SenderFactory;

  readonly #listener: Deno.Listener;
  readonly #acceptor: Acceptor;
  readonly #options: PoemListenerOptions;
  /**
   * Transfers in flight. A sender reports its end to a callback (no promise
   * chain per client while it waits); the drain waits on {@linkcode #idle}.
   */
  readonly #active = new Set<PoemSender>();
  /** Settles when the last transfer in flight has been recorded. */
  #idle?: PromiseWithResolvers<void>;
  /** Aborts a wait for a slot at the cap when the listener closes. */
  readonly #closing = new AbortController();
  /** Connections the factory is still deciding (reading a PROXY header), each with its task. */
  readonly #deciding = new Map<Deno.Conn, Promise<void>>();
  #sweeper?: ReturnType<typeof setInterval>;

  /**
   * Wraps a listening socket; call {@linkcode serve} to start accepting.
   * Without a factory, every client is sent the poem.
   */
  constructor(
    listener: Deno.Listener,
    poem: Poem,
    options: PoemListenerOptions = {},
    factory?: SenderFactory,
  ) {
    this.#listener = listener;
    this.poem = poem;
    this.addr = listener.addr as Deno.NetAddr;
    this.#options = options;
    this.factory = factory ?? new PoemFactory(options);
    this.#acceptor = new Acceptor(listener, this.#closing.signal, log);
  }

  /** Accepts that failed (a client gone before it was accepted, no descriptors left, ...). */
  get acceptErrors(): number {
    return this.#acceptor.errors;
  }

  /** Connections being served now. */
  get activeCount(): number {
    return this.#active.size;
  }

  /** This listener's slow-mode pace now (SIGHUP may change it); undefined in fast mode. */
  get pace(): Pace | undefined {
    const wheel = this.#options.wheel;
    return wheel ? { numBytes: this.#options.numBytes ?? 10, delay: wheel.delay } : undefined;
  }

  /** Whether every connection must start with a PROXY protocol header. */
  get proxyProtocol(): boolean {
    return this.#options.proxyProtocol ?? false;
  }

  /**
   * The transfers in flight, read at the moment of the call (for status
   * pages: the objects are made here, not kept per connection). The peer is
   * the connection's, which behind a balancer is the client its PROXY
   * header named.
   */
  *transfers(): Generator<TransferInFlight> {
    for (const sender of this.#active) {
      const peer = sender.conn.remoteAddr as Deno.NetAddr;
      yield { sender, peer, sent: sender.sent, total: sender.content.size };
    }
  }

  /** Accepts and serves clients until {@linkcode close}; resolves then. */
  async serve(): Promise<void> {
    this.#startSweeper();
    for await (const conn of this.#accepted()) this.#connected(conn);
  }

  /** Stops accepting: new connections are refused. Transfers in flight go on. */
  close(): void {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort();
    closeQuietly(this.#listener);
    // Not served yet, so nothing to drain: they are cut short now.
    for (const conn of this.#deciding.keys()) closeQuietly(conn);
  }

  /**
   * Waits up to `timeout` seconds for transfers in flight, then cuts short
   * whatever remains. Call after {@linkcode close}.
   * @returns how many transfers the timeout cut short.
   */
  async drain(timeout: number): Promise<number> {
    // close() ended the PROXY header reads; their records belong in the summary.
    await Promise.all(this.#deciding.values());
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeout * 1000);
    });
    await Promise.race([this.#allRecorded(), expired]);
    clearTimeout(timer);
    const remaining = [...this.#active];
    for (const sender of remaining) sender.abort("cut short");
    await this.#allRecorded();
    clearInterval(this.#sweeper);
    return remaining.length;
  }

  /** Settles once no transfer is in flight (none start after {@linkcode close}). */
  #allRecorded(): Promise<void> {
    if (this.#active.size === 0) return Promise.resolve();
    this.#idle ??= Promise.withResolvers<void>();
    return this.#idle.promise;
  }

  /**
   * The accept loop (see {@linkcode Acceptor}); at the connection cap it
   * holds the accepted client until a slot frees.
   */
  async *#accepted(): AsyncGenerator<Deno.Conn> {
    const closing = this.#closing.signal;
    for (let conn; (conn = await this.#acceptor.accept());) {
      if (this.#options.cap && !(await this.#options.cap.reserve(closing))) {
        // Shutting down while this client waited for a slot: it gets nothing.
        closeQuietly(conn);
        this.#cutShort(conn.remoteAddr as Deno.NetAddr);
        return;
      }
      yield conn;
    }
  }

  /**
   * One connection's life, top to bottom, once it is accepted with a slot
   * under the cap: the factory decides (buildProtocol), the sender sends,
   * and {@linkcode #ended} records. A factory that must read from the client
   * first (a PROXY header) decides in the connection's own task, so a slow
   * client never holds up accepting.
   */
  #connected(conn: Deno.Conn): void {
    try {
      const decision = this.factory.build(conn, this.poem.content);
      if (!(decision instanceof Promise)) return this.#begin(conn, decision);
      this.#deciding.set(
        conn,
        decision.then((late) => this.#begin(conn, late, true))
          .catch((err) => this.#failed(conn, err))
          .finally(() => this.#deciding.delete(conn)),
      );
    } catch (err) {
      // One connection's failure must not end the accept loop.
      this.#failed(conn, err);
    }
  }

  /** Sends, or refuses; `late` after a factory that read from the client first. */
  #begin(conn: Deno.Conn, decision: Decision, late = false): void {
    if (late && this.#closing.signal.aborted) {
      // Shutting down while the client was being decided: not served, as at the cap.
      closeQuietly(conn);
      this.#options.cap?.release();
      return this.#cutShort(decision.conn.remoteAddr as Deno.NetAddr);
    }
    if (decision instanceof Refusal) return this.#refused(conn, decision);
    const sender = decision;
    const faults = sender.conn.faults;
    // Not `?? []`: an array per connection on the common path, for nothing.
    if (faults) {
      for (const { name } of faults) {
        this.faultsApplied.set(name, (this.faultsApplied.get(name) ?? 0) + 1);
      }
    }
    this.#options.observer?.transferStarted(this, sender, sender.conn.remoteAddr as Deno.NetAddr);
    this.#active.add(sender);
    sender.start(this.#ended);
  }

  /** The end of a transfer: its slot freed, and recorded as the connection describes it. */
  #ended = (result: SendResult, sender: PoemSender): void => {
    this.#active.delete(sender);
    try {
      this.#options.cap?.release();
      const conn = sender.conn;
      this.#record(
        conn.remoteAddr as Deno.NetAddr,
        conn.describe ? conn.describe(result) : result,
        sender,
      );
    } catch (err) {
      // A failing observer must not leave the drain waiting.
      log.error("Could not record a transfer: {error}", { error: String(err) });
    } finally {
      if (this.#active.size === 0 && this.#idle) {
        this.#idle.resolve();
        this.#idle = undefined;
      }
    }
  };

  /** Closed without a byte, as the factory decided: counted and logged with its reason. */
  #refused(conn: Deno.Conn, refusal: Refusal): void {
    closeQuietly(conn);
    this.#options.cap?.release();
    const peer = formatAddress(refusal.conn.remoteAddr as Deno.NetAddr);
    if (refusal.reason === "denied") {
      this.counts.denied++;
      connectionLog.info("{peer} denied by --allow/--deny: closed without a byte.", {
        peer,
        poem: this.poem.path,
      });
    } else {
      this.badProxyHeaders++;
      connectionLog.warning("{peer} sent no valid PROXY header ({error}): closed without a byte.", {
        peer,
        poem: this.poem.path,
        error: refusal.detail,
      });
    }
  }

  #failed(conn: Deno.Conn, err: unknown): void {
    log.error("Could not serve a connection: {error}", { error: String(err) });
    this.#options.cap?.release();
    closeQuietly(conn);
  }

  #cutShort(peer: Deno.NetAddr): void {
    const result = { sent: 0, total: this.poem.content.size, ms: 0 };
    this.#record(peer, { ...result, outcome: "cut short" });
  }

  #record(peer: Deno.NetAddr, result: SendResult, sender?: PoemSender): void {
    this.counts[result.outcome]++;
    this.#options.observer?.transferEnded(this, result, sender);
    const error = result.outcome === "error";
    // Properties are built only when the record is logged at all.
    if (!connectionLog.isEnabledFor(error ? "warning" : "info")) return;
    logRecord(
      connectionLog,
      error ? "warning" : "info",
      RECORD_TEMPLATES[
        (error ? 1 : 0) + ("faults" in result ? 2 : 0) + ("atMost" in result ? 2 : 0)
      ],
      { peer: formatAddress(peer), poem: this.poem.path, ...result },
    );
  }

  // One timer per listener checks every transfer's clock (the write timeout,
  // the lingering close), rather than a timer per connection.
  #startSweeper(): void {
    const timeout = (this.#options.writeTimeout ?? 30) * 1000;
    this.#sweeper = setInterval(() => {
      const now = performance.now();
      for (const sender of this.#active) sender.checkTimeouts(now, timeout);
    }, timeout > 0 ? Math.min(SWEEP_MS, timeout / 4) : SWEEP_MS);
    Deno.unrefTimer(this.#sweeper!);
  }
}

function closeQuietly(closer: { close(): void }): void {
  try {
    closer.close();
  } catch {
    // Closed already, or the client is gone.
  }
}
