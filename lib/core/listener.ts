/**
 * One listening socket and its lifecycle: the accept loop (which survives
 * accept errors), the connection cap, access control, the clocks of its
 * transfers (write timeout, lingering close), and draining on shutdown.
 * What is sent is the sender's business.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { Acceptor, formatAddress } from "./accept.ts";
import { logRecord } from "../base/log.ts";
import type { AccessList } from "../policies/access.ts";
import type { FaultyConn, ListenerFaults } from "../fixture/faults.ts";
import { readProxyHeader } from "../policies/proxy.ts";
import type { Pace, PaceWheel } from "./pace.ts";
import type { Poem } from "./poem.ts";
import { type Outcome, OUTCOMES, PoemSender, type SendResult } from "./sender.ts";

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
  /** Who may be served; everyone when absent. */
  access?: AccessList;
  /** Shared cap on transfers in progress; none when absent. */
  gate?: ConnectionGate;
  /** Drop a client that takes no bytes for this many seconds; 0 disables. @default {30} */
  writeTimeout?: number;
  /** Every connection starts with a PROXY protocol header naming the client. @default {false} */
  proxyProtocol?: boolean;
  /** Told of every transfer's start and end, for statistics; none when absent. */
  observer?: TransferObserver;
  /** Faults on purpose, drawn per connection; none when absent (the normal path). */
  faults?: ListenerFaults;
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

/**
 * A cap on transfers in progress, shared by all listeners. A listener takes
 * a slot after it accepts a client and before it sends a byte; at the cap,
 * it holds that one client and stops accepting, so the kernel's backlog holds
 * the rest. Slots are handed out in the order they were asked for, so no
 * listener starves another.
 *
 * @example
 * ```ts
 * import { ConnectionGate } from "./listener.ts";
 * const gate = new ConnectionGate(10);
 * if (await gate.reserve()) gate.release();
 * ```
 */
export class ConnectionGate {
  /** Most transfers in progress at once. */
  readonly max: number;
  #open = 0;
  #waiters: (() => void)[] = [];

  /** A gate for at most `max` transfers. */
  constructor(max: number) {
    this.max = max;
  }

  /** Slots in use. */
  get open(): number {
    return this.#open;
  }

  /**
   * Waits for a free slot and takes it.
   * @returns `false`, without a slot, when `signal` aborts first.
   */
  async reserve(signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return false;
    if (this.#open < this.max) {
      // Logged once each time the cap is reached, not for every client after.
      if (++this.#open === this.max) {
        log.info("At the cap of {max} transfers; the next client waits for one to end.", {
          max: this.max,
        });
      }
      return true;
    }
    return await new Promise<boolean>((resolve) => {
      const granted = () => {
        signal?.removeEventListener("abort", giveUp);
        resolve(true);
      };
      const giveUp = () => {
        this.#waiters.splice(this.#waiters.indexOf(granted), 1);
        resolve(false);
      };
      this.#waiters.push(granted);
      signal?.addEventListener("abort", giveUp, { once: true });
    });
  }

  /** Gives a slot back, straight to the longest waiter if there is one. */
  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#open--;
  }
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
 * Serves one poem on one listening socket.
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
  /**
   * The clients of transfers whose PROXY header named one: the balancer is
   * `conn.remoteAddr`, and the status report must show whom the log names.
   */
  readonly #proxied = new Map<PoemSender, Deno.NetAddr>();
  /** Connections whose PROXY header is still being read, each with its task. */
  readonly #awaitingHeader = new Map<Deno.Conn, Promise<void>>();
  #sweeper?: ReturnType<typeof setInterval>;

  /** Wraps a listening socket; call {@linkcode serve} to start accepting. */
  constructor(listener: Deno.Listener, poem: Poem, options: PoemListenerOptions = {}) {
    this.#listener = listener;
    this.poem = poem;
    this.addr = listener.addr as Deno.NetAddr;
    this.#options = options;
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
   * pages: the objects are made here, not kept per connection).
   */
  *transfers(): Generator<TransferInFlight> {
    for (const sender of this.#active) {
      const peer = this.#proxied.get(sender) ?? sender.conn.remoteAddr as Deno.NetAddr;
      yield { sender, peer, sent: sender.sent, total: sender.content.size };
    }
  }

  /** Accepts and serves clients until {@linkcode close}; resolves then. */
  async serve(): Promise<void> {
    this.#startSweeper();
    for await (const conn of this.#accepted()) {
      try {
        this.#handle(conn);
      } catch (err) {
        // One connection's failure must not end the accept loop.
        log.error("Could not serve a connection: {error}", { error: String(err) });
        this.#options.gate?.release();
        closeQuietly(conn);
      }
    }
  }

  /** Stops accepting: new connections are refused. Transfers in flight go on. */
  close(): void {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort();
    closeQuietly(this.#listener);
    // Not served yet, so nothing to drain: they are cut short now.
    for (const conn of this.#awaitingHeader.keys()) closeQuietly(conn);
  }

  /**
   * Waits up to `timeout` seconds for transfers in flight, then cuts short
   * whatever remains. Call after {@linkcode close}.
   * @returns how many transfers the timeout cut short.
   */
  async drain(timeout: number): Promise<number> {
    // close() ended the header reads; their records belong in the summary.
    await Promise.all(this.#awaitingHeader.values());
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
      if (this.#options.gate && !(await this.#options.gate.reserve(closing))) {
        // Shutting down while this client waited for a slot: it gets nothing.
        closeQuietly(conn);
        this.#record(conn.remoteAddr as Deno.NetAddr, {
          sent: 0,
          total: this.poem.content.size,
          ms: 0,
          outcome: "cut short",
        });
        return;
      }
      yield conn;
    }
  }

  #handle(conn: Deno.Conn, client?: Deno.NetAddr): void {
    if (this.#options.proxyProtocol && !client) {
      // In the connection's own task: a slow header never holds up accepting.
      this.#awaitingHeader.set(conn, this.#readHeader(conn));
      return;
    }
    const peer = client ?? conn.remoteAddr as Deno.NetAddr;
    if (this.#options.access && !this.#options.access.permits(peer.hostname)) {
      closeQuietly(conn);
      this.#options.gate?.release();
      this.counts.denied++;
      connectionLog.info("{peer} denied by --allow/--deny: closed without a byte.", {
        peer: formatAddress(peer),
        poem: this.poem.path,
      });
      return;
    }
    // Only a listener with faults draws them; the normal path is unchanged.
    const content = this.poem.content;
    const faults = this.#options.faults?.plan();
    const sender = faults
      ? new PoemSender(faults.wrap(conn), faults.content(content), this.#options)
      : new PoemSender(conn, content, this.#options);
    this.#options.observer?.transferStarted(this, sender, peer);
    this.#active.add(sender);
    if (client) this.#proxied.set(sender, client);
    // The common case shares one callback; a PROXY client's address or a
    // fault plan needs a closure of its own.
    sender.start(
      client || faults
        ? (result) => this.#ended(sender, faults ? faults.report(result, content) : result, peer)
        : this.#senderEnded,
    );
  }

  #senderEnded = (result: SendResult, sender: PoemSender): void =>
    this.#ended(sender, result, sender.conn.remoteAddr as Deno.NetAddr);

  #ended(sender: PoemSender, result: SendResult, peer: Deno.NetAddr): void {
    this.#active.delete(sender);
    this.#proxied.delete(sender);
    try {
      this.#options.gate?.release();
      this.#record(peer, result, sender);
    } catch (err) {
      // A failing observer must not leave the drain waiting.
      log.error("Could not record a transfer: {error}", { error: String(err) });
    } finally {
      if (this.#active.size === 0 && this.#idle) {
        this.#idle.resolve();
        this.#idle = undefined;
      }
    }
  }

  /**
   * Reads the PROXY header, then serves the client it names (or, for a
   * balancer's LOCAL health check, the balancer itself). A connection with
   * no valid header within the timeout is closed without a byte.
   */
  async #readHeader(conn: Deno.Conn): Promise<void> {
    const proxy = conn.remoteAddr as Deno.NetAddr;
    let client: Deno.NetAddr | undefined;
    let error: unknown;
    try {
      client = (await readProxyHeader(conn)).source ?? proxy;
    } catch (err) {
      error = err;
    } finally {
      this.#awaitingHeader.delete(conn);
    }
    if (client && !this.#closing.signal.aborted) {
      try {
        return this.#handle(conn, client);
      } catch (err) {
        log.error("Could not serve a connection: {error}", { error: String(err) });
        this.#options.gate?.release();
        return closeQuietly(conn);
      }
    }
    closeQuietly(conn);
    this.#options.gate?.release();
    if (this.#closing.signal.aborted) {
      // Shutting down before the header was in: not served, as at the cap.
      const result = { sent: 0, total: this.poem.content.size, ms: 0 };
      this.#record(client ?? proxy, { ...result, outcome: "cut short" });
    } else {
      this.badProxyHeaders++;
      connectionLog.warning("{peer} sent no valid PROXY header ({error}): closed without a byte.", {
        peer: formatAddress(proxy),
        poem: this.poem.path,
        error: error instanceof Error ? error.message : String(error),
      });
    }
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
      if (!this.#options.faults) {
        for (const sender of this.#active) sender.checkTimeouts(now, timeout);
        return;
      }
      // A fault that holds a connection on purpose (a delay, a stall) is not
      // a client that stopped reading: no write timeout, no end of the linger.
      for (const sender of this.#active) {
        if (!(sender.conn as Partial<FaultyConn>).holding) sender.checkTimeouts(now, timeout);
      }
    }, timeout > 0 ? Math.min(SWEEP_MS, timeout / 4) : SWEEP_MS);
    Deno.unrefTimer(this.#sweeper!);
  }
}

export { formatAddress };

function closeQuietly(closer: { close(): void }): void {
  try {
    closer.close();
  } catch {
    // Closed already, or the client is gone.
  }
}
