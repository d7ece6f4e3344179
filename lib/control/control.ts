/**
 * The control endpoint (`--control HOST:PORT`): a subset of Toxiproxy's v2
 * HTTP API, with its paths, JSON and status codes, so that a test suite
 * drives poetry's faults through a Toxiproxy client library unchanged.
 * Every listener is a proxy; a toxic is a fault for the clients that come
 * next (docs/control.md has the mapping).
 *
 * It runs on the admin endpoint's hardened HTTP server (limits on
 * connections, head and body sizes, and every read and write in time),
 * answers loopback peers only unless told otherwise, and never reads a
 * file: a proxy's upstream names a poem the server already holds.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { formatAddress } from "../base/address.ts";
import { VERSION } from "../base/version.ts";
import { HttpServer } from "../observe/http_server.ts";
import { explainListenError } from "../observe/listen_error.ts";
import type { PoetryServer } from "../server/server.ts";
import { ApiError } from "./api_error.ts";
import { isLoopback } from "./addresses.ts";
import { ProxyCollection } from "./proxies.ts";

const log = getLogger(["poetry", "control"]);
/** The most a request may take once read, queue included. */
const HANDLER_MS = 10_000;

/**
 * Where the control endpoint listens and whom it answers.
 *
 * @example
 * ```ts
 * import type { ControlOptions } from "./control.ts";
 * const options: ControlOptions = { hostname: "127.0.0.1", port: 8474 };
 * ```
 */
export interface ControlOptions {
  /** Address to listen on. */
  hostname: string;
  /** Port; 0 lets the system choose (the log line says which). Toxiproxy's is 8474. */
  port: number;
  /** Answer peers that are not on loopback (`--control-allow-remote`). @default {false} */
  allowRemote?: boolean;
  /** Where a proxy created with `:PORT` listens: the server's `--iface`. @default {"localhost"} */
  iface?: string;
  /** The `--config` file, whose listener settings SIGHUP no longer re-applies (logged). */
  config?: string;
}

/**
 * The control endpoint; see the module doc.
 *
 * @example
 * ```ts
 * import { serve } from "../server/server.ts";
 * import { ControlEndpoint } from "./control.ts";
 * const server = await serve(["poems/a-short-one.txt"], { iface: "127.0.0.1", resettable: true });
 * const control = ControlEndpoint.start(server, { hostname: "127.0.0.1", port: 0 });
 * const proxies = await fetch(`http://127.0.0.1:${control.addr.port}/proxies`);
 * console.log(Object.keys(await proxies.json()));
 * await control.shutdown();
 * await server.shutdown();
 * ```
 */
export class ControlEndpoint {
  /** The address it listens on. */
  readonly addr: Deno.NetAddr;
  readonly #http: HttpServer;

  private constructor(http: HttpServer) {
    this.#http = http;
    this.addr = http.addr;
  }

  /**
   * Starts listening and logs the address.
   * @throws {StartupError} when the address is in use or not this machine's.
   * @throws {UsageError} when `--allow-net` does not cover the address.
   */
  static start(server: PoetryServer, options: ControlOptions): ControlEndpoint {
    const proxies = new ProxyCollection(server, options.iface ?? "localhost");
    const api = new ControlApi(server, proxies, options.allowRemote ?? false);
    let http: HttpServer;
    try {
      http = HttpServer.listen(
        {
          hostname: options.hostname,
          port: options.port,
          who: "Control endpoint",
          nameOption: "",
        },
        (request, peer) => api.respond(request, peer),
        log,
      );
    } catch (err) {
      throw explainListenError(err, "control", options, {
        inUse: "stop the other server (a Toxiproxy?), or choose another port for --control",
        notAvailable: "use a loopback address, e.g. --control 127.0.0.1:8474",
        allowNet: options.hostname,
      });
    }
    log.info("Control endpoint (Toxiproxy API) on http://{address}/ ({count} proxies).", {
      address: formatAddress(http.addr),
      count: server.listeners.length,
    });
    if (options.config !== undefined) {
      log.info(
        "With --control, SIGHUP re-reads the poems but not {config}'s listener settings: faults change through the control endpoint.",
        { config: options.config },
      );
    }
    return new ControlEndpoint(http);
  }

  /** Stops listening; requests under way get a second to finish. */
  shutdown(): Promise<void> {
    return this.#http.shutdown();
  }
}

/**
 * The API without its HTTP server: routes a request to the proxies, one
 * change at a time, and answers in Toxiproxy's shapes. `peer` is whom the
 * request came from (the HTTP server's connection).
 *
 * @example
 * ```ts
 * import { serve } from "../server/server.ts";
 * import { ControlApi } from "./control.ts";
 * import { ProxyCollection } from "./proxies.ts";
 * const server = await serve(["poems/a-short-one.txt"], { iface: "127.0.0.1" });
 * const api = new ControlApi(server, new ProxyCollection(server, "127.0.0.1"), false);
 * const peer = { transport: "tcp" as const, hostname: "192.0.2.1", port: 40000 };
 * console.log((await api.respond(new Request("http://127.0.0.1/proxies"), peer)).status); // 403
 * await server.shutdown();
 * ```
 */
export class ControlApi {
  readonly #server: PoetryServer;
  readonly #proxies: ProxyCollection;
  readonly #allowRemote: boolean;
  /** Changes run one after the other: a listen awaits, and two must not interleave. */
  #queue: Promise<unknown> = Promise.resolve();

  /** Answers for `proxies` of `server`; peers off loopback only when `allowRemote`. */
  constructor(server: PoetryServer, proxies: ProxyCollection, allowRemote: boolean) {
    this.#server = server;
    this.#proxies = proxies;
    this.#allowRemote = allowRemote;
  }

  /** The answer to one request; an error is Toxiproxy's `{"error", "status"}`, logged once. */
  async respond(request: Request, peer: Deno.NetAddr): Promise<Response> {
    const path = new URL(request.url).pathname;
    try {
      if (!this.#allowRemote && !isLoopback(peer.hostname)) {
        throw new ApiError(
          "the control endpoint answers loopback clients only (--control-allow-remote)",
          403,
        );
      }
      // Toxiproxy's own guard: a web page must not drive the faults.
      if (request.headers.get("user-agent")?.startsWith("Mozilla/")) {
        throw new ApiError("User agent not allowed", 403);
      }
      if (this.#server.draining) throw new ApiError("shutting down", 503);
      const segments = path.split("/").slice(1).map((s) => {
        try {
          return decodeURIComponent(s);
        } catch {
          throw new ApiError("malformed path", 400);
        }
      });
      const body = request.method === "GET" ? undefined : await request.text();
      return await withinTime(
        this.#serialized(() => this.#route(request.method, segments, body)),
        HANDLER_MS,
      );
    } catch (err) {
      const error = err instanceof ApiError ? err : new ApiError(String(err), 500);
      log.info("Control: {peer} {method} {path}: {status} {error}", {
        peer: formatAddress(peer),
        method: request.method,
        path,
        status: error.status,
        error: error.message,
      });
      return Response.json(error.body(), { status: error.status });
    }
  }

  #serialized<T>(change: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(change, change);
    this.#queue = next.catch(() => {});
    return next;
  }

  async #route(method: string, path: string[], text: string | undefined): Promise<Response> {
    const proxies = this.#proxies;
    const body = () => parseBody(text);
    const allow = (...methods: string[]) => {
      if (!methods.includes(method)) {
        throw new ApiError(`method ${method} not allowed here: ${methods.join(", ")}`, 405);
      }
    };
    const [top, name, sub, toxic, ...rest] = path;
    if (rest.length > 0 || path.length === 0) throw new ApiError("not found", 404);
    if (top === "version" && path.length === 1) {
      allow("GET");
      return new Response(`{"version": "${VERSION}"}\n`, {
        headers: { "content-type": "application/json;charset=utf-8" },
      });
    }
    if (top === "reset" && path.length === 1) {
      allow("POST");
      await proxies.reset();
      return new Response(null, { status: 204 });
    }
    if (top === "populate" && path.length === 1) {
      allow("POST");
      const { proxies: done, error } = await proxies.populate(body());
      return Response.json({ ...error?.body(), proxies: done }, { status: error?.status ?? 201 });
    }
    if (top !== "proxies") throw new ApiError("not found", 404);
    if (path.length === 1) {
      allow("GET", "POST");
      if (method === "GET") return Response.json(proxies.list());
      return Response.json(await proxies.create(body()), { status: 201 });
    }
    if (path.length === 2) {
      allow("GET", "POST", "PATCH", "DELETE");
      if (method === "GET") return Response.json(proxies.get(name));
      if (method === "DELETE") return noContent(proxies.remove(name));
      return Response.json(await proxies.update(name, body()));
    }
    if (sub !== "toxics") throw new ApiError("not found", 404);
    if (path.length === 3) {
      allow("GET", "POST");
      if (method === "GET") return Response.json(proxies.toxics(name));
      return Response.json(proxies.addToxic(name, body()));
    }
    allow("GET", "POST", "PATCH", "DELETE");
    if (method === "GET") return Response.json(proxies.toxic(name, toxic));
    if (method === "DELETE") return noContent(proxies.removeToxic(name, toxic));
    return Response.json(proxies.updateToxic(name, toxic, body()));
  }
}

/**
 * A request's answer within `ms`, else a 503 (as Toxiproxy's 25 s
 * TimeoutHandler): a change queued behind a slow one still runs, later.
 */
async function withinTime(answer: Promise<Response>, ms: number): Promise<Response> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ApiError(`no answer within ${ms / 1000} s`, 503)), ms);
  });
  try {
    return await Promise.race([answer, late]);
  } finally {
    clearTimeout(timer);
  }
}

function noContent(_done: void): Response {
  return new Response(null, { status: 204 });
}

/** JSON, or Toxiproxy's `bad request body` (Go's decoder says `EOF` for an empty one). */
function parseBody(text: string | undefined): unknown {
  if (!text) throw ApiError.badBody("EOF");
  try {
    return JSON.parse(text);
  } catch (err) {
    throw ApiError.badBody(err instanceof Error ? err.message : String(err));
  }
}
