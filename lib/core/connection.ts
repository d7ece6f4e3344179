/**
 * Deciding each new connection: the project's `Factory.buildProtocol`.
 *
 * A connection's life, top to bottom (lib/core/listener.ts runs it):
 *
 * 1. accepted, with a slot under the cap;
 * 2. decided by the listener's {@linkcode SenderFactory}: a chain of
 *    wrappers, outermost first, as Twisted wraps a factory
 *    (`HAProxyWrappingFactory`, `policies.py`):
 *    - the PROXY header is read and the client it names stands in for the
 *      balancer (lib/policies/proxy.ts),
 *    - the client is checked against `--allow`/`--deny` (lib/policies/access.ts),
 *    - a fault plan is drawn and wraps the connection (lib/fixture/),
 *    - and at the end of the chain, {@linkcode PoemFactory} builds the
 *      sender: the Protocol;
 * 3. sent: the sender writes the poem, fast or paced, and closes;
 * 4. recorded: counted, observed and logged once, with the connection's
 *    own account of itself ({@linkcode SenderConn.describe}).
 *
 * A wrapper that refuses returns a {@linkcode Refusal}: the connection is
 * closed without a byte and recorded with its reason.
 *
 * @module
 */

import type { PoemContent } from "./poem.ts";
import { PoemSender, type SenderConn, type SenderOptions } from "./sender.ts";

/**
 * Why a connection was closed without a byte.
 *
 * @example
 * ```ts
 * import type { RefusalReason } from "./connection.ts";
 * const reason: RefusalReason = "denied";
 * ```
 */
export type RefusalReason = "denied" | "bad PROXY header";

/**
 * A connection a factory will not serve.
 *
 * @example
 * ```ts
 * import { Refusal } from "./connection.ts";
 * const refuse = (conn: Deno.Conn) => new Refusal(conn, "denied");
 * ```
 */
export class Refusal {
  /**
   * `conn` is the connection as far as the chain got (behind a balancer,
   * the one that names the client); `detail` says more for the log.
   */
  constructor(
    readonly conn: SenderConn,
    readonly reason: RefusalReason,
    readonly detail?: string,
  ) {}
}

/**
 * What a factory decides for one connection.
 *
 * @example
 * ```ts
 * import { type Decision, Refusal } from "./connection.ts";
 * const served = (d: Decision) => !(d instanceof Refusal);
 * ```
 */
export type Decision = PoemSender | Refusal;

/**
 * Decides each new connection: builds its sender or refuses it. A promise
 * only when it must read from the client first (a PROXY header), so the
 * common path makes none.
 *
 * @example
 * ```ts
 * import { PoemFactory, Refusal, type SenderFactory } from "./connection.ts";
 * // A wrapper that serves only IPv4 clients, around the poem's own factory.
 * const ipv4Only = (inner: SenderFactory): SenderFactory => ({
 *   build: (conn, content) =>
 *     (conn.remoteAddr as Deno.NetAddr).hostname.includes(":")
 *       ? new Refusal(conn, "denied")
 *       : inner.build(conn, content),
 * });
 * const factory = ipv4Only(new PoemFactory({}));
 * ```
 */
export interface SenderFactory {
  /** The sender for `conn`, which is to be sent `content`; or a refusal. */
  build(conn: SenderConn, content: PoemContent): Decision | Promise<Decision>;
}

/**
 * The end of every chain: a {@linkcode PoemSender} for the poem, at the
 * listener's pace. `options` is read when each sender is built, so a
 * reload's new pace reaches the clients that come next.
 *
 * @example
 * ```ts
 * import { PoemFactory } from "./connection.ts";
 * const factory = new PoemFactory({ numBytes: 10 });
 * ```
 */
export class PoemFactory implements SenderFactory {
  readonly #options: SenderOptions;

  /** Builds senders with `options` (the listener's, shared). */
  constructor(options: SenderOptions) {
    this.#options = options;
  }

  /** A sender of `content` on `conn`. */
  build(conn: SenderConn, content: PoemContent): PoemSender {
    return new PoemSender(conn, content, this.#options);
  }
}
