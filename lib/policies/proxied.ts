/**
 * The PROXY protocol as a wrapper around a listener's factory, as Twisted's
 * `HAProxyWrappingFactory` wraps one: the header is read first, then the
 * connection is handed on with the client it names as its `remoteAddr`, so
 * the access list, the faults, the logs and the status page all see the
 * client, never the balancer.
 *
 * @module
 */

import { type Decision, Refusal, type SenderFactory } from "../core/connection.ts";
import type { PoemContent } from "../core/poem.ts";
import type { SenderConn } from "../core/sender.ts";
import { readProxyHeader } from "./proxy.ts";

/**
 * A connection whose peer is the client a PROXY header named; everything
 * else is the connection's own.
 *
 * @example
 * ```ts
 * import { ProxiedConn } from "./proxied.ts";
 * const behind = (conn: Deno.Conn) =>
 *   new ProxiedConn(conn, { transport: "tcp", hostname: "127.0.0.9", port: 40000 });
 * ```
 */
export class ProxiedConn implements SenderConn {
  /** The client the header named. */
  readonly remoteAddr: Deno.NetAddr;
  /** Closes with a TCP RST, when the connection can (a listener that resets). */
  readonly reset?: () => void;
  /** Sends small writes at once, when the connection can. */
  readonly setNoDelay?: (noDelay?: boolean) => void;
  readonly #conn: SenderConn & { reset?(): void; setNoDelay?(noDelay?: boolean): void };

  /** `conn`, as coming from `client`. */
  constructor(
    conn: SenderConn & { reset?(): void; setNoDelay?(noDelay?: boolean): void },
    client: Deno.NetAddr,
  ) {
    this.#conn = conn;
    this.remoteAddr = client;
    if (conn.reset) this.reset = () => conn.reset!();
    if (conn.setNoDelay) this.setNoDelay = (noDelay) => conn.setNoDelay!(noDelay);
  }

  /** Reads from the client, through the balancer. */
  read(p: Uint8Array): Promise<number | null> {
    return this.#conn.read(p);
  }

  /** Writes to the client, through the balancer. */
  write(p: Uint8Array): Promise<number> {
    return this.#conn.write(p);
  }

  /** Ends the sending side. */
  closeWrite(): Promise<void> {
    return this.#conn.closeWrite();
  }

  /** Closes the connection. */
  close(): void {
    this.#conn.close();
  }
}

/**
 * Reads a PROXY header (v1 or v2) from every connection before the inner
 * factory decides; a connection without a valid one within the timeout is
 * refused. A balancer's LOCAL health check is served as the balancer.
 *
 * @example
 * ```ts
 * import { PoemFactory } from "../core/connection.ts";
 * import { ProxyHeaderFactory } from "./proxied.ts";
 * const factory = new ProxyHeaderFactory(new PoemFactory({}));
 * ```
 */
export class ProxyHeaderFactory implements SenderFactory {
  readonly #inner: SenderFactory;

  /** Reads the header, then lets `inner` decide. */
  constructor(inner: SenderFactory) {
    this.#inner = inner;
  }

  /** The inner factory's decision for the client the header names. */
  async build(conn: SenderConn, content: PoemContent): Promise<Decision> {
    let client: Deno.NetAddr | undefined;
    try {
      client = (await readProxyHeader(conn)).source;
    } catch (err) {
      return new Refusal(
        conn,
        "bad PROXY header",
        err instanceof Error ? err.message : String(err),
      );
    }
    return await this.#inner.build(client ? new ProxiedConn(conn, client) : conn, content);
  }
}
