/**
 * The admin endpoint (`--admin HOST:PORT`): an HTTP server in the same
 * process, on its own address, for operators and learners.
 *
 * - `GET /metrics`: Prometheus text exposition format.
 * - `GET /healthz`: `200 ok` while serving, `503 draining` once shutdown began.
 * - `GET /status.json`: listeners, transfers in flight, totals (see {@linkcode StatusReport}).
 * - `GET /`: a status page that polls `/status.json` and draws it.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { formatAddress } from "../base/address.ts";
import { HttpServer } from "./http_server.ts";
import { explainListenError } from "./listen_error.ts";
import { exposition, EXPOSITION_CONTENT_TYPE, type MetricFamily } from "./exposition.ts";
import type { PoetryMetrics } from "./metrics.ts";
import type { PoetryServer } from "../server/server.ts";
import { type StatusReport, statusReport } from "./status.ts";
import { STATUS_PAGE } from "./status_page.ts";

const log = getLogger(["poetry", "admin"]);

/**
 * Where and what the admin endpoint serves.
 *
 * @example
 * ```ts
 * import type { AdminOptions } from "./admin.ts";
 * import { PoetryMetrics } from "./metrics.ts";
 * const options: AdminOptions = { hostname: "127.0.0.1", port: 9100, metrics: new PoetryMetrics() };
 * ```
 */
export interface AdminOptions {
  /** Address to listen on. */
  hostname: string;
  /** Port; 0 lets the system choose (the log line says which). */
  port: number;
  /** Host names answered besides its address, IP literals and `localhost` (`--admin-name`). */
  names?: string[];
  /** The server's metrics: the observer it was started with. */
  metrics: PoetryMetrics;
  /** The poems' `--iface`, for the hint when `--allow-net` does not cover the admin address. */
  iface?: string;
}

/**
 * What the admin endpoint reports on: one server ({@linkcode observe}), or a
 * group of them that looks like one (`--workers`, lib/scale/group.ts).
 *
 * @example
 * ```ts
 * import { type Observed, observe } from "./admin.ts";
 * import { PoetryMetrics } from "./metrics.ts";
 * import { serve } from "../server/server.ts";
 * const metrics = new PoetryMetrics();
 * const server = await serve(["poems/"], { iface: "127.0.0.1", observer: metrics });
 * const observed: Observed = observe(server, metrics);
 * console.log((await observed.report()).listeners.length);
 * await server.shutdown();
 * ```
 */
export interface Observed {
  /** Whether shutdown has begun: `/healthz` answers 503. */
  readonly draining: boolean;
  /** The metric families for `/metrics`. */
  families(): Promise<MetricFamily[]>;
  /** The report for `/status.json`. */
  report(): Promise<StatusReport>;
}

/**
 * One server, observed through the metrics it was started with.
 *
 * @example
 * ```ts
 * import { observe } from "./admin.ts";
 * import { PoetryMetrics } from "./metrics.ts";
 * import { serve } from "../server/server.ts";
 * const metrics = new PoetryMetrics();
 * const server = await serve(["poems/"], { iface: "127.0.0.1", observer: metrics });
 * console.log((await observe(server, metrics).families()).length > 0); // true
 * await server.shutdown();
 * ```
 */
export function observe(server: PoetryServer, metrics: PoetryMetrics): Observed {
  return {
    get draining() {
      return server.draining;
    },
    families: () => Promise.resolve(metrics.families(server)),
    report: () => Promise.resolve(statusReport(server, metrics)),
  };
}

/**
 * The admin endpoint; see the module doc.
 *
 * @example
 * ```ts
 * import { AdminEndpoint, observe } from "./admin.ts";
 * import { PoetryMetrics } from "./metrics.ts";
 * import { serve } from "../server/server.ts";
 * const metrics = new PoetryMetrics();
 * const server = await serve(["poems/"], { iface: "127.0.0.1", observer: metrics });
 * const admin = AdminEndpoint.start(observe(server, metrics), {
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   metrics,
 * });
 * console.log(`http://127.0.0.1:${admin.addr.port}/metrics`);
 * await server.shutdown();
 * await admin.shutdown();
 * ```
 */
export class AdminEndpoint {
  /** The address it listens on. */
  readonly addr: Deno.NetAddr;
  readonly #http: HttpServer;
  readonly #stopClock: () => void;

  private constructor(http: HttpServer, metrics: PoetryMetrics) {
    this.#http = http;
    this.addr = http.addr;
    // Start times to a tenth of a second are plenty for the status page.
    this.#stopClock = metrics.keepClock(100);
  }

  /**
   * Starts listening and logs the address.
   * @throws {StartupError} when the address is in use or not this machine's.
   * @throws {UsageError} when `--allow-net` does not cover the address.
   */
  static start(observed: Observed, options: AdminOptions): AdminEndpoint {
    let http: HttpServer | undefined;
    const handler = (request: Request) => respond(request, observed, http!);
    try {
      http = HttpServer.listen({ ...options, who: "Admin endpoint" }, handler, log);
    } catch (err) {
      throw explainListenError(err, "admin", options, {
        inUse: "choose another port for --admin",
        notAvailable: "use one of this machine's addresses, e.g. --admin 127.0.0.1:9100",
        allowNet: [...new Set([options.iface ?? "localhost", options.hostname])].join(","),
      });
    }
    const endpoint = new AdminEndpoint(http, options.metrics);
    log.info("Admin endpoint on http://{address}/ (metrics at /metrics, health at /healthz).", {
      address: formatAddress(endpoint.addr),
    });
    return endpoint;
  }

  /** Stops listening; requests under way get a second to finish, then every connection is closed. */
  shutdown(): Promise<void> {
    this.#stopClock();
    return this.#http.shutdown();
  }
}

async function respond(request: Request, observed: Observed, http: HttpServer): Promise<Response> {
  const { pathname } = new URL(request.url);
  if (request.method !== "GET" && request.method !== "HEAD") {
    return new Response("only GET\n", { status: 405, headers: { allow: "GET, HEAD" } });
  }
  const noStore = { "cache-control": "no-store" };
  switch (pathname) {
    case "/metrics": {
      const families = [...await observed.families(), ...httpFamilies(http)];
      return new Response(exposition(families), {
        headers: { "content-type": EXPOSITION_CONTENT_TYPE, ...noStore },
      });
    }
    case "/healthz":
      // A load balancer stops sending clients once this turns 503.
      return observed.draining
        ? new Response("draining\n", { status: 503, headers: noStore })
        : new Response("ok\n", { headers: noStore });
    case "/status.json":
      return Response.json(await observed.report(), { headers: noStore });
    case "/":
      return new Response(STATUS_PAGE, {
        headers: { "content-type": "text/html; charset=utf-8", ...noStore },
      });
    default:
      return new Response("not found: try /, /metrics, /healthz or /status.json\n", {
        status: 404,
      });
  }
}

/** The admin endpoint's own health: what its limits turned away. */
function httpFamilies(http: HttpServer): MetricFamily[] {
  return [
    {
      name: "poetry_admin_accept_errors_total",
      help: "Accepts on the admin endpoint that failed (no descriptors, ...).",
      type: "counter",
      samples: [{ value: http.acceptErrors }],
    },
    {
      name: "poetry_admin_rejected_requests_total",
      help:
        "Admin requests answered with an error before any handler (malformed, foreign Host, too large, too slow).",
      type: "counter",
      samples: [{ value: http.rejected }],
    },
    {
      name: "poetry_admin_refused_connections_total",
      help: "Admin connections closed at once because the endpoint's connection cap was reached.",
      type: "counter",
      samples: [{ value: http.overCap }],
    },
  ];
}
