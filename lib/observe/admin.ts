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
import { StartupError, UsageError } from "../base/errors.ts";
import { formatAddress } from "../core/accept.ts";
import { HttpServer } from "./http_server.ts";
import {
  addFamilies,
  exposition,
  EXPOSITION_CONTENT_TYPE,
  type MetricFamily,
  type PoetryMetrics,
} from "./metrics.ts";
import type { Pace } from "../core/pace.ts";
import type { PoetryServer } from "../server/server.ts";
import { addSnapshots, type StatsSnapshot } from "./stats.ts";
import { STATUS_PAGE } from "./status_page.ts";
import { VERSION } from "../base/version.ts";
import type { WorkerPool } from "../scale/workers.ts";

const log = getLogger(["poetry", "admin"]);

/**
 * Most transfers listed in one `/status.json`: with 10,000 slow clients the
 * page would otherwise fetch megabytes twice a second. The rest are counted.
 */
const MAX_LISTED = 500;

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
  /** The other workers of `--workers`, whose metrics and transfers are added in. */
  workers?: WorkerPool;
}

/**
 * One transfer in flight in {@linkcode StatusReport}.
 *
 * @example
 * ```ts
 * import type { TransferStatus } from "./admin.ts";
 * const t: TransferStatus = { peer: "127.0.0.1:50000", sent: 120, total: 400, seconds: 1.2 };
 * ```
 */
export interface TransferStatus {
  /** The client, `host:port`. */
  peer: string;
  /** Bytes the kernel has taken. */
  sent: number;
  /** Bytes in this client's version of the poem. */
  total: number;
  /** Seconds since it was accepted. */
  seconds: number;
}

/**
 * What `GET /status.json` returns.
 *
 * @example
 * ```ts
 * import type { StatusReport } from "./admin.ts";
 * const inFlight = (r: StatusReport) => r.listeners.map((l) => l.transfers.length);
 * ```
 */
export interface StatusReport {
  /** poetry's version. */
  version: string;
  /** Whether shutdown has begun. */
  draining: boolean;
  /** Totals since start (the stats record's). */
  totals: StatsSnapshot;
  /** One per listener, in the order of the `Serving` lines. */
  listeners: {
    /** The poem, as named on the command line. */
    poem: string;
    /** Where it listens, `host:port`. */
    address: string;
    /** Bytes in the current version of the poem. */
    size: number;
    /** Slow mode's pace, or `null` in fast mode. */
    pace: Pace | null;
    /** Transfers in flight. */
    active: number;
    /** The oldest transfers in flight, at most 500 over all listeners. */
    transfers: TransferStatus[];
    /** Transfers in flight not listed. */
    unlisted: number;
  }[];
  /**
   * With `--workers`, each worker's own totals, the main thread first: how
   * evenly the kernel spreads the clients. Absent with one worker.
   */
  workers?: { completed: number; inFlight: number }[];
}

/**
 * The admin endpoint; see the module doc.
 *
 * @example
 * ```ts
 * import { AdminEndpoint } from "./admin.ts";
 * import { PoetryMetrics } from "./metrics.ts";
 * import { serve } from "../server/server.ts";
 * const metrics = new PoetryMetrics();
 * const server = await serve(["poems/"], { iface: "127.0.0.1", observer: metrics });
 * const admin = AdminEndpoint.start(server, { hostname: "127.0.0.1", port: 0, metrics });
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
  static start(server: PoetryServer, options: AdminOptions): AdminEndpoint {
    let http: HttpServer | undefined;
    const handler = (request: Request) => respond(request, server, options, http!);
    try {
      http = HttpServer.listen({ ...options, who: "Admin endpoint" }, handler, log);
    } catch (err) {
      throw explainListenError(err, options);
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

/**
 * The status report for `/status.json`.
 *
 * @example
 * ```ts
 * import { statusReport } from "./admin.ts";
 * import { PoetryMetrics } from "./metrics.ts";
 * import { serve } from "../server/server.ts";
 * const metrics = new PoetryMetrics();
 * const server = await serve(["poems/"], { iface: "127.0.0.1", observer: metrics });
 * console.log(statusReport(server, metrics).listeners.length);
 * await server.shutdown();
 * ```
 */
export function statusReport(
  server: PoetryServer,
  metrics: PoetryMetrics,
): StatusReport {
  const now = performance.now();
  let room = MAX_LISTED;
  return {
    version: VERSION,
    draining: server.draining,
    totals: metrics.stats.snapshot(server),
    listeners: server.listeners.map((listener) => {
      const transfers: TransferStatus[] = [];
      for (const t of listener.transfers()) {
        if (room === 0) break;
        room--;
        const started = metrics.startedAt(t.sender);
        transfers.push({
          peer: formatAddress(t.peer),
          sent: t.sent,
          total: t.total,
          seconds: started === undefined ? 0 : Math.round(now - started) / 1000,
        });
      }
      return {
        poem: listener.poem.path,
        address: formatAddress(listener.addr),
        size: listener.poem.content.size,
        pace: listener.pace ?? null,
        active: listener.activeCount,
        transfers,
        unlisted: listener.activeCount - transfers.length,
      };
    }),
  };
}

/**
 * The main thread's status report with its workers' (`--workers`) added:
 * totals added, each listener's transfers merged (the oldest first, at most
 * 500 over all), and each worker's own totals in `workers`.
 *
 * @example
 * ```ts
 * import { addReports, statusReport } from "./admin.ts";
 * import { PoetryMetrics } from "./metrics.ts";
 * import { serve } from "../server/server.ts";
 * const metrics = new PoetryMetrics();
 * const server = await serve(["poems/"], { iface: "127.0.0.1", observer: metrics });
 * const own = statusReport(server, metrics);
 * console.log(addReports(own, [own]).workers?.length); // 2
 * await server.shutdown();
 * ```
 */
export function addReports(own: StatusReport, workers: StatusReport[]): StatusReport {
  const all = [own, ...workers];
  let room = MAX_LISTED;
  return {
    ...own,
    totals: addSnapshots(own.totals, workers.map((w) => w.totals)),
    listeners: own.listeners.map((listener, i) => {
      const same = all.map((r) => r.listeners[i]).filter((l) => l !== undefined);
      const active = same.reduce((n, l) => n + l.active, 0);
      const transfers = same.flatMap((l) => l.transfers)
        .sort((a, b) => b.seconds - a.seconds)
        .slice(0, room);
      room -= transfers.length;
      return { ...listener, active, transfers, unlisted: active - transfers.length };
    }),
    workers: all.map((r) => ({ completed: r.totals.completed, inFlight: r.totals.inFlight })),
  };
}

async function respond(
  request: Request,
  server: PoetryServer,
  options: AdminOptions,
  http: HttpServer,
): Promise<Response> {
  const { pathname } = new URL(request.url);
  if (request.method !== "GET" && request.method !== "HEAD") {
    return new Response("only GET\n", { status: 405, headers: { allow: "GET, HEAD" } });
  }
  const noStore = { "cache-control": "no-store" };
  switch (pathname) {
    case "/metrics":
      return new Response(await metricsText(server, options, http), {
        headers: { "content-type": EXPOSITION_CONTENT_TYPE, ...noStore },
      });
    case "/healthz":
      // A load balancer stops sending clients once this turns 503.
      return server.draining
        ? new Response("draining\n", { status: 503, headers: noStore })
        : new Response("ok\n", { headers: noStore });
    case "/status.json":
      return Response.json(await fullReport(server, options), { headers: noStore });
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

async function metricsText(
  server: PoetryServer,
  options: AdminOptions,
  http: HttpServer,
): Promise<string> {
  const own = [...options.metrics.families(server), ...httpFamilies(http)];
  if (!options.workers) return exposition(own);
  return exposition(addFamilies(own, await options.workers.families()));
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

async function fullReport(server: PoetryServer, options: AdminOptions): Promise<StatusReport> {
  const own = statusReport(server, options.metrics);
  if (!options.workers) return own;
  return addReports(own, await options.workers.reports());
}

function explainListenError(err: unknown, options: AdminOptions): Error {
  const where = formatAddress({ transport: "tcp", hostname: options.hostname, port: options.port });
  if (err instanceof Deno.errors.AddrInUse) {
    return new StartupError(
      `cannot serve the admin endpoint: ${where} is already in use`,
      "choose another port for --admin",
    );
  }
  if (err instanceof Deno.errors.AddrNotAvailable) {
    return new StartupError(
      `cannot serve the admin endpoint on ${options.hostname}: not an address of this machine`,
      "use one of this machine's addresses, e.g. --admin 127.0.0.1:9100",
    );
  }
  if (err instanceof Deno.errors.NotCapable) {
    const hosts = [...new Set([options.iface ?? "localhost", options.hostname])].join(",");
    return new UsageError(
      `no permission to listen on ${where} for the admin endpoint`,
      `run again with --allow-net covering it, e.g. --allow-net=${hosts}`,
    );
  }
  const message = err instanceof Error ? err.message : String(err);
  return new StartupError(`cannot serve the admin endpoint on ${where}: ${message}`);
}
