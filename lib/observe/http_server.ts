/**
 * A small, hardened HTTP/1.1 server for the admin endpoint: its own loop over
 * `Deno.listen`, not `Deno.serve`. `Deno.serve` (Deno 2.9.6) ends its accept
 * loop on EMFILE, has no header or idle timeout and no connection cap, waits
 * for ever on a client that never reads its answers, and prints a trace with
 * a synchronous `console.error` when a handler throws (a malformed `Host`
 * makes `new URL(request.url)` throw). node:http's server in Deno has been
 * built on `Deno.serve` (denoland/std#2537), so it was not tried. The
 * requests it must answer are few and small (GET, and short
 * JSON bodies), so parsing them here is little code, and every limit is ours:
 *
 * - the accept loop is the poem port's ({@linkcode Acceptor}): it backs off
 *   and retries when descriptors run out, and counts and logs each failure;
 * - at most {@linkcode HttpLimits.maxConnections} connections, far below the
 *   file limit (the rest get a 503 and are closed at once);
 * - a header timeout, an idle keep-alive timeout, a body timeout and a write
 *   timeout (a client that never reads is closed);
 * - a limit on the request head and on the body;
 * - only `Host` names that cannot be a DNS-rebinding attack: IP literals,
 *   `localhost` and its subdomains, and names the operator adds;
 * - every error goes through the log as one record; nothing writes to stderr.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import { formatAddress } from "../base/address.ts";
import { Acceptor } from "../core/accept.ts";
import {
  BadRequest,
  bodyLength,
  ConnInput,
  Gone,
  type Head,
  normalName,
  parseHead,
  parseHost,
} from "./http_request.ts";
import { errorBytes, responseBytes } from "./http_response.ts";

/**
 * Limits of {@linkcode HttpServer}; times in seconds.
 *
 * @example
 * ```ts
 * import type { HttpLimits } from "./http_server.ts";
 * const strict: HttpLimits = { maxConnections: 16, headerTimeout: 2 };
 * ```
 */
export interface HttpLimits {
  /** Connections open at once; more get a 503 and are closed. @default {64} */
  maxConnections?: number;
  /** Seconds from a request's first byte (or the accept) to the end of its head. @default {10} */
  headerTimeout?: number;
  /** Seconds a kept-alive connection may wait for its next request. @default {5} */
  idleTimeout?: number;
  /** Seconds to receive a request's body. @default {10} */
  bodyTimeout?: number;
  /** Seconds a response may take to be written (a client that never reads). @default {10} */
  writeTimeout?: number;
  /** Bytes of request line and headers. @default {8192} */
  maxHeadBytes?: number;
  /** Bytes of a request body. @default {65536} */
  maxBodyBytes?: number;
}

/**
 * Where {@linkcode HttpServer} listens and whom it answers.
 *
 * @example
 * ```ts
 * import type { HttpServerOptions } from "./http_server.ts";
 * const options: HttpServerOptions = { hostname: "127.0.0.1", port: 9100, names: ["poetry.lan"] };
 * ```
 */
export interface HttpServerOptions extends HttpLimits {
  /** Address to listen on. */
  hostname: string;
  /** Port; 0 lets the system choose. */
  port: number;
  /** `Host` names answered besides IP literals and `localhost`. @default {[]} */
  names?: string[];
  /** Names the server in its log records ("Admin endpoint"). @default {"HTTP"} */
  who?: string;
  /** The option that adds a `Host` name, for the 421's hint; `""` when there is none. @default {"--admin-name"} */
  nameOption?: string;
}

/**
 * Answers one request. `request.url` is always a valid URL; `peer` is the client.
 *
 * @example
 * ```ts
 * import type { HttpHandler } from "./http_server.ts";
 * const hello: HttpHandler = () => new Response("hello\n");
 * ```
 */
export type HttpHandler = (request: Request, peer: Deno.NetAddr) => Response | Promise<Response>;

const DEFAULTS: Required<HttpLimits> = {
  maxConnections: 64,
  headerTimeout: 10,
  idleTimeout: 5,
  bodyTimeout: 10,
  writeTimeout: 10,
  maxHeadBytes: 8192,
  maxBodyBytes: 65536,
};

/** How long requests under way may finish once shutdown begins. */
const SHUTDOWN_GRACE_MS = 1000;

/**
 * The HTTP server; see the module doc.
 *
 * @example
 * ```ts
 * import { getLogger } from "@logtape/logtape";
 * import { HttpServer } from "./http_server.ts";
 * const server = HttpServer.listen(
 *   { hostname: "127.0.0.1", port: 0 },
 *   () => new Response("ok\n"),
 *   getLogger(["example"]),
 * );
 * const response = await fetch(`http://127.0.0.1:${server.addr.port}/`);
 * console.log(await response.text()); // "ok\n"
 * await server.shutdown();
 * ```
 */
export class HttpServer {
  /** The address it listens on. */
  readonly addr: Deno.NetAddr;
  /** Requests refused before the handler saw them (bad, foreign `Host`, too large, timed out). */
  rejected = 0;
  /** Connections closed at once because {@linkcode HttpLimits.maxConnections} were open. */
  overCap = 0;

  readonly #listener: Deno.Listener;
  readonly #acceptor: Acceptor;
  readonly #closing = new AbortController();
  readonly #limits: Required<HttpLimits>;
  readonly #names: Set<string>;
  readonly #who: string;
  readonly #nameOption: string;
  readonly #handler: HttpHandler;
  readonly #log: Logger;
  /** Open connections, each with whether a request is under way on it. */
  readonly #open = new Map<Deno.Conn, { busy: boolean }>();
  readonly #loop: Promise<void>;
  #atCapLogged = false;

  private constructor(
    listener: Deno.Listener,
    options: HttpServerOptions,
    handler: HttpHandler,
    log: Logger,
  ) {
    this.#listener = listener;
    this.addr = listener.addr as Deno.NetAddr;
    this.#who = options.who ?? "HTTP";
    this.#nameOption = options.nameOption ?? "--admin-name";
    this.#acceptor = new Acceptor(listener, this.#closing.signal, log, this.#who);
    this.#limits = { ...DEFAULTS };
    for (const key of Object.keys(DEFAULTS) as (keyof HttpLimits)[]) {
      if (options[key] !== undefined) this.#limits[key] = options[key];
    }
    this.#names = new Set((options.names ?? []).map(normalName));
    this.#names.add(normalName(options.hostname));
    this.#handler = handler;
    this.#log = log;
    this.#loop = this.#serve();
  }

  /**
   * Listens and starts answering.
   * @throws the `Deno.listen` error when it cannot listen.
   */
  static listen(options: HttpServerOptions, handler: HttpHandler, log: Logger): HttpServer {
    const listener = Deno.listen({ hostname: options.hostname, port: options.port });
    return new HttpServer(listener, options, handler, log);
  }

  /** Accepts that failed (see {@linkcode Acceptor}). */
  get acceptErrors(): number {
    return this.#acceptor.errors;
  }

  /** Connections open now. */
  get connections(): number {
    return this.#open.size;
  }

  /**
   * Stops accepting, closes idle connections at once, gives requests under
   * way a second to be answered, then closes whatever is left: a client that
   * never reads cannot keep the process alive.
   */
  async shutdown(): Promise<void> {
    if (!this.#closing.signal.aborted) {
      this.#closing.abort();
      closeQuietly(this.#listener);
    }
    for (const [conn, state] of this.#open) if (!state.busy) closeQuietly(conn);
    const deadline = performance.now() + SHUTDOWN_GRACE_MS;
    while (this.#open.size > 0 && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    for (const conn of this.#open.keys()) closeQuietly(conn);
    this.#open.clear();
    await this.#loop;
  }

  async #serve(): Promise<void> {
    for (let conn; (conn = await this.#acceptor.accept());) {
      if (this.#open.size >= this.#limits.maxConnections) {
        this.#refuseOverCap(conn);
        continue;
      }
      // Logged again once the flood is over, not at every connection let in under the cap.
      if (this.#open.size < this.#limits.maxConnections / 2) this.#atCapLogged = false;
      const state = { busy: false };
      this.#open.set(conn, state);
      this.#connection(conn, state).finally(() => {
        this.#open.delete(conn);
        closeQuietly(conn);
      });
    }
  }

  #refuseOverCap(conn: Deno.Conn): void {
    this.overCap++;
    if (!this.#atCapLogged) {
      this.#atCapLogged = true;
      this.#log.warning("{who}: {max} connections open; more are answered 503 and closed.", {
        who: this.#who,
        max: this.#limits.maxConnections,
      });
    }
    // A fresh socket's buffer takes these few bytes at once; no wait.
    conn.write(errorBytes(503, "too many connections; try again\n"))
      .catch(() => {}).finally(() => closeQuietly(conn));
  }

  /** Reads requests and writes answers, one at a time, until either side ends. */
  async #connection(conn: Deno.Conn, state: { busy: boolean }): Promise<void> {
    const peer = conn.remoteAddr as Deno.NetAddr;
    let timedOut: Promise<void> | undefined;
    const input = new ConnInput(conn, () => {
      timedOut = this.#timedOut(conn, peer, input);
    });
    try {
      await this.#requests(conn, peer, input, state);
    } finally {
      // A 408 being written must go out before the connection is closed.
      await timedOut;
    }
  }

  async #requests(
    conn: Deno.Conn,
    peer: Deno.NetAddr,
    input: ConnInput,
    state: { busy: boolean },
  ): Promise<void> {
    for (let first = true; !this.#closing.signal.aborted; first = false) {
      let request: Request;
      let keepAlive: boolean;
      let head = false;
      try {
        ({ request, keepAlive } = await this.#read(input, first, state));
        head = request.method === "HEAD";
      } catch (err) {
        if (err instanceof BadRequest) {
          this.#reject(peer, err);
          await this.#write(conn, errorBytes(err.status, `${err.message}\n`));
        }
        return;
      }
      let response: Response;
      try {
        response = await this.#handler(request, peer);
      } catch (err) {
        this.#log.error("{who}: could not answer {method} {path}: {error}", {
          who: this.#who,
          method: request.method,
          path: new URL(request.url).pathname,
          error: String(err),
        });
        response = new Response("internal error\n", { status: 500 });
      }
      const last = !keepAlive || this.#closing.signal.aborted;
      if (!(await this.#write(conn, await responseBytes(response, last, head))) || last) return;
      state.busy = false;
    }
  }

  /** One request: its head within the header timeout, its body within the body timeout. */
  async #read(
    input: ConnInput,
    first: boolean,
    state: { busy: boolean },
  ): Promise<{ request: Request; keepAlive: boolean }> {
    const limits = this.#limits;
    // A kept-alive connection may idle; once a byte arrives, the head must follow.
    if (!first && input.buffered === 0) {
      if (!(await input.next(limits.idleTimeout * 1000))) throw new Gone();
    }
    state.busy = true;
    const end = await input.until(
      [13, 10, 13, 10],
      limits.maxHeadBytes,
      limits.headerTimeout * 1000,
    );
    const head = parseHead(input.take(end));
    const host = this.#checkHost(head);
    const length = bodyLength(head.headers);
    if (length > limits.maxBodyBytes) {
      throw new BadRequest(413, `a body of at most ${limits.maxBodyBytes} bytes`);
    }
    const body = length > 0 ? await input.exactly(length, limits.bodyTimeout * 1000) : null;
    const url = `http://${host}${head.target}`;
    let request: Request;
    try {
      request = new Request(url, {
        method: head.method,
        headers: head.headers,
        body: head.method === "GET" || head.method === "HEAD" ? null : body,
      });
    } catch {
      // The parser let through something fetch's Request refuses: still a bad request.
      throw new BadRequest(400, "malformed request");
    }
    const connection = head.headers.get("connection")?.toLowerCase() ?? "";
    const keepAlive = head.version === "1.1" && !/\bclose\b/.test(connection);
    return { request, keepAlive };
  }

  /**
   * The `Host` to put in the request's URL. A name that is not this
   * endpoint's own, `localhost` or one the operator added may be an
   * attacker's, re-pointed at this machine (DNS rebinding): refused.
   */
  #checkHost(head: Head): string {
    const hosts = head.headers.get("host");
    if (hosts === null) {
      if (head.version === "1.1") throw new BadRequest(400, "a Host header is required");
      return formatAddress(this.addr);
    }
    if (hosts.includes(",")) throw new BadRequest(400, "one Host header");
    const host = parseHost(hosts);
    if (!host) throw new BadRequest(400, "malformed Host header");
    const name = normalName(host.name);
    if (
      !host.literal && !this.#names.has(name) && name !== "localhost" &&
      !name.endsWith(".localhost")
    ) {
      throw new BadRequest(
        421,
        `this endpoint does not answer for ${name}; use its address or localhost${
          this.#nameOption ? `, or add the name with ${this.#nameOption}` : ""
        }`,
      );
    }
    return hosts;
  }

  /**
   * A read ran out of time: a request begun and not finished is answered
   * 408 (a write of its own, bounded) and recorded; an idle connection, or
   * one that never sent a byte, is just closed.
   */
  async #timedOut(conn: Deno.Conn, peer: Deno.NetAddr, input: ConnInput): Promise<void> {
    if (input.timedOut === "idle" || (input.timedOut === "head" && input.buffered === 0)) {
      return closeQuietly(conn);
    }
    const what = input.timedOut === "head" ? "header" : input.timedOut;
    this.#reject(peer, new BadRequest(408, `${what} timeout`));
    const stop = setTimeout(() => closeQuietly(conn), 1000);
    try {
      await conn.write(errorBytes(408, "request timeout\n"));
    } catch {
      // Gone meanwhile.
    } finally {
      clearTimeout(stop);
      closeQuietly(conn);
    }
  }

  #reject(peer: Deno.NetAddr, err: BadRequest): void {
    this.rejected++;
    this.#log.info("{who}: {peer} sent a bad request ({reason}): answered {status}.", {
      who: this.#who,
      peer: formatAddress(peer),
      reason: err.message,
      status: err.status,
    });
  }

  /** Writes all of `bytes` within the write timeout; false when the client did not take them. */
  async #write(conn: Deno.Conn, bytes: Uint8Array): Promise<boolean> {
    const timer = setTimeout(() => closeQuietly(conn), this.#limits.writeTimeout * 1000);
    try {
      for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
      return true;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }
}

function closeQuietly(closer: { close(): void }): void {
  try {
    closer.close();
  } catch {
    // Closed already.
  }
}
