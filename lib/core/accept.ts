/**
 * The accept loop every listening socket shares: the poem port's and the
 * admin endpoint's. A bare `for await (const conn of listener)` ends on the
 * first accept error, and `Deno.serve`'s ends on EMFILE; this one skips
 * errors that belong to one connection, backs off while the process is out
 * of descriptors or memory, counts and logs them, and ends only when asked.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { formatAddress } from "../base/address.ts";

/** First pause after accept ran out of resources; it doubles up to {@linkcode MAX_BACKOFF_MS}. */
const MIN_BACKOFF_MS = 10;
/** Longest pause between accept attempts while resources stay exhausted. */
const MAX_BACKOFF_MS = 1000;
/**
 * Accept errors that mean the process or system is out of something; only
 * these pause the accept loop. Anything else belongs to one connection (a
 * client that reset while it waited in the backlog makes accept fail with
 * ENOTCONN) and is skipped at once: a port scanner must not stall everyone.
 */
const OUT_OF_RESOURCES = new Set(["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]);

/**
 * Accepts connections one at a time until its signal aborts.
 *
 * @example
 * ```ts
 * import { getLogger } from "@logtape/logtape";
 * import { Acceptor } from "./accept.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const stop = new AbortController();
 * const acceptor = new Acceptor(listener, stop.signal, getLogger(["example"]));
 * stop.abort();
 * listener.close();
 * console.log(await acceptor.accept()); // undefined
 * ```
 */
export class Acceptor {
  /** Accepts that failed (a client gone before it was accepted, no descriptors left, ...). */
  errors = 0;
  readonly #listener: Deno.Listener;
  readonly #signal: AbortSignal;
  readonly #log: Logger;
  readonly #who: string;
  #backoff = MIN_BACKOFF_MS;

  /**
   * `who` names the listener in the warning of a failed accept: "Admin
   * endpoint: accepting on ... failed"; without it, "Accepting on ... failed".
   */
  constructor(listener: Deno.Listener, signal: AbortSignal, log: Logger, who = "") {
    this.#listener = listener;
    this.#signal = signal;
    this.#log = log;
    this.#who = who;
  }

  /** The next connection, or `undefined` once the signal has aborted. */
  async accept(): Promise<Deno.Conn | undefined> {
    while (!this.#signal.aborted) {
      try {
        const conn = await this.#listener.accept();
        this.#backoff = MIN_BACKOFF_MS;
        return conn;
      } catch (err) {
        if (this.#signal.aborted) return undefined;
        this.errors++;
        await this.#pauseAfter(err);
      }
    }
    return undefined;
  }

  async #pauseAfter(err: unknown): Promise<void> {
    const address = formatAddress(this.#listener.addr as Deno.NetAddr);
    const error = err instanceof Error ? err.message : String(err);
    // An error with no errno (a socket closed under the loop) backs off
    // too: skipping it at once could spin for ever.
    const code = (err as { code?: string }).code;
    if (code && !OUT_OF_RESOURCES.has(code)) {
      this.#log.debug("A client on {address} was gone before it was accepted: {error}.", {
        address,
        error,
      });
      return;
    }
    const ms = this.#backoff;
    const message = "ccepting on {address} failed: {error}; retrying in {ms} ms.";
    this.#log.warning(this.#who ? `${this.#who}: a${message}` : `A${message}`, {
      address,
      error,
      ms,
    });
    await new Promise((resolve) => setTimeout(resolve, ms));
    this.#backoff = Math.min(ms * 2, MAX_BACKOFF_MS);
  }
}
