/**
 * One listening socket and its lifecycle: the accept loop (which survives
 * accept errors), the connection cap, access control, the write timeout,
 * and draining on shutdown. What is sent is the sender's business.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { AccessList } from "./access.ts";
import type { PaceWheel } from "./pace.ts";
import type { Poem } from "./poem.ts";
import { PoemSender, type SendResult } from "./sender.ts";

const log = getLogger(["poetry", "listener"]);
const connectionLog = getLogger(["poetry", "connection"]);

/** First pause after a failed accept; it doubles up to {@linkcode MAX_BACKOFF_MS}. */
const MIN_BACKOFF_MS = 10;
/** Longest pause between accept attempts while accepting keeps failing. */
const MAX_BACKOFF_MS = 1000;

/**
 * Counts of transfers, for the shutdown summary.
 *
 * @example
 * ```ts
 * import type { TransferCounts } from "./listener.ts";
 * const counts: TransferCounts = { served: 10, cutShort: 1, denied: 0 };
 * ```
 */
export interface TransferCounts {
  /** Transfers that sent the whole poem. */
  served: number;
  /** Transfers that ended early: client left, timed out, cut short, error. */
  cutShort: number;
  /** Clients closed without a byte by `--allow`/`--deny`. */
  denied: number;
}

/** What a listener needs besides its socket and poem. */
export interface PoemListenerOptions {
  /** Shared slow-mode scheduler; fast mode when absent. */
  wheel?: PaceWheel;
  /** Bytes per paced write. @default {10} */
  numBytes?: number;
  /** Who may be served; everyone when absent. */
  access?: AccessList;
  /** Shared cap on open connections; none when absent. */
  gate?: ConnectionGate;
  /** Drop a client that takes no bytes for this many seconds; 0 disables. @default {30} */
  writeTimeout?: number;
}

/**
 * A cap on connections open at once, shared by all listeners. A listener
 * reserves a slot before it accepts, so at the cap it stops accepting and
 * the kernel's backlog holds new clients until a slot frees up.
 *
 * @example
 * ```ts
 * import { ConnectionGate } from "./listener.ts";
 * const gate = new ConnectionGate(10);
 * await gate.reserve();
 * gate.release();
 * ```
 */
export class ConnectionGate {
  /** Most connections open at once. */
  readonly max: number;
  #open = 0;
  #waiters: (() => void)[] = [];

  /** A gate for at most `max` connections. */
  constructor(max: number) {
    this.max = max;
  }

  /** Slots reserved or in use. */
  get open(): number {
    return this.#open;
  }

  /** Waits for a free slot and takes it. */
  async reserve(): Promise<void> {
    while (this.#open >= this.max) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    // Logged once each time the cap is reached, not for every client after.
    if (++this.#open === this.max) {
      log.info("At the cap of {max} connections; accepting resumes when one ends.", {
        max: this.max,
      });
    }
  }

  /** Gives a slot back. */
  release(): void {
    this.#open--;
    this.#waiters.shift()?.();
  }
}

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
  /** Transfers so far. */
  readonly counts: TransferCounts = { served: 0, cutShort: 0, denied: 0 };

  readonly #listener: Deno.Listener;
  readonly #options: PoemListenerOptions;
  /** Transfers in flight, each with the promise that settles when it is recorded. */
  readonly #active = new Map<PoemSender, Promise<void>>();
  #closed = false;
  #sweeper?: ReturnType<typeof setInterval>;

  /** Wraps a listening socket; call {@linkcode serve} to start accepting. */
  constructor(listener: Deno.Listener, poem: Poem, options: PoemListenerOptions = {}) {
    this.#listener = listener;
    this.poem = poem;
    this.addr = listener.addr as Deno.NetAddr;
    this.#options = options;
  }

  /** Connections being served now. */
  get activeCount(): number {
    return this.#active.size;
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
        try {
          conn.close();
        } catch {
          // Closed already.
        }
      }
    }
  }

  /** Stops accepting: new connections are refused. Transfers in flight go on. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
  }

  /**
   * Waits up to `timeout` seconds for transfers in flight, then cuts short
   * whatever remains. Call after {@linkcode close}.
   * @returns how many transfers the timeout cut short.
   */
  async drain(timeout: number): Promise<number> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeout * 1000);
    });
    await Promise.race([Promise.all(this.#active.values()), expired]);
    clearTimeout(timer);
    const remaining = [...this.#active];
    for (const [sender] of remaining) sender.abort("cut short");
    await Promise.all(remaining.map(([, recorded]) => recorded));
    clearInterval(this.#sweeper);
    return remaining.length;
  }

  /**
   * The accept loop. A bare `for await (const conn of listener)` ends on the
   * first accept error (EMFILE, for one); this logs it, backs off, and goes
   * on, and at the connection cap it stops accepting until a slot frees.
   */
  async *#accepted(): AsyncGenerator<Deno.Conn> {
    let backoff = MIN_BACKOFF_MS;
    while (!this.#closed) {
      await this.#options.gate?.reserve();
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (err) {
        this.#options.gate?.release();
        if (this.#closed) return;
        log.warning("Accepting on {address} failed: {error}; retrying in {ms} ms.", {
          address: formatAddress(this.addr),
          error: err instanceof Error ? err.message : String(err),
          ms: backoff,
        });
        await new Promise((resolve) => setTimeout(resolve, backoff));
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        continue;
      }
      backoff = MIN_BACKOFF_MS;
      yield conn;
    }
  }

  #handle(conn: Deno.Conn): void {
    const peer = conn.remoteAddr as Deno.NetAddr;
    if (this.#options.access && !this.#options.access.permits(peer.hostname)) {
      try {
        conn.close();
      } catch {
        // The client is gone already.
      }
      this.#options.gate?.release();
      this.counts.denied++;
      connectionLog.info("{peer} denied by --allow/--deny: closed without a byte.", {
        peer: formatAddress(peer),
        poem: this.poem.path,
      });
      return;
    }
    const sender = new PoemSender(conn, this.poem.content, this.#options);
    this.#active.set(
      sender,
      sender.run().then((result) => {
        this.#active.delete(sender);
        this.#options.gate?.release();
        this.#record(peer, result);
      }),
    );
  }

  #record(peer: Deno.NetAddr, result: SendResult): void {
    if (result.outcome === "completed") this.counts.served++;
    else this.counts.cutShort++;
    // Properties are built only when the record is logged at all.
    const properties = () => ({ peer: formatAddress(peer), poem: this.poem.path, ...result });
    if (result.outcome === "error") {
      connectionLog.warning(
        "{peer} got {sent} of {total} bytes of {poem} in {ms} ms: error ({error}).",
        properties,
      );
    } else {
      connectionLog.info(
        "{peer} got {sent} of {total} bytes of {poem} in {ms} ms: {outcome}.",
        properties,
      );
    }
  }

  // One timer per listener checks every transfer for a stalled write, rather
  // than a timer per connection.
  #startSweeper(): void {
    const timeout = (this.#options.writeTimeout ?? 30) * 1000;
    if (timeout <= 0) return;
    this.#sweeper = setInterval(() => {
      const now = performance.now();
      for (const sender of this.#active.keys()) {
        const since = sender.writingSince;
        if (since !== undefined && now - since > timeout) sender.abort("timed out");
      }
    }, Math.min(1000, timeout / 4));
    Deno.unrefTimer(this.#sweeper!);
  }
}

/**
 * `host:port`, with IPv6 hosts in brackets.
 *
 * @example
 * ```ts
 * import { formatAddress } from "./listener.ts";
 * formatAddress({ transport: "tcp", hostname: "::1", port: 10001 }); // "[::1]:10001"
 * ```
 */
export function formatAddress(addr: Deno.NetAddr): string {
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return `${host}:${addr.port}`;
}
