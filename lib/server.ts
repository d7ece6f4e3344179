/**
 * A poetry server: one listener per poem, sharing a pace, a connection cap
 * and an access list; reload, graceful shutdown.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { AccessList } from "./access.ts";
import { StartupError, UsageError } from "./errors.ts";
import {
  ConnectionGate,
  emptyCounts,
  formatAddress,
  PoemListener,
  type TransferCounts,
  type TransferObserver,
} from "./listener.ts";
import { OUTCOMES } from "./sender.ts";
import { type Pace, PaceWheel } from "./pace.ts";
import { loadPoems, type Poem } from "./poem.ts";

const log = getLogger(["poetry", "server"]);

/**
 * Options for {@linkcode serve}; the command line sets the same ones.
 *
 * @example
 * ```ts
 * import type { ServeOptions } from "./server.ts";
 * const slow: ServeOptions = { port: 10000, pace: { numBytes: 10, delay: 0.1 }, maxConnections: 1000 };
 * ```
 */
export interface ServeOptions {
  /** Port of the first listener; the next poems get port + 1, + 2, ... 0 picks free ports. @default {0} */
  port?: number;
  /** Address to listen on. @default {"localhost"} */
  iface?: string;
  /** Slow mode; fast mode when absent or when `delay` is 0. */
  pace?: Pace;
  /** Most connections open at once, over all listeners. @default {undefined} no cap */
  maxConnections?: number;
  /** Seconds a client may take no bytes before it is dropped; 0 disables. @default {30} */
  writeTimeout?: number;
  /** Seconds {@linkcode PoetryServer.shutdown} lets transfers finish. @default {10} */
  drainTimeout?: number;
  /** Address blocks that may be served; with any given, all others are denied. */
  allow?: string[];
  /** Address blocks never served; wins over `allow`. */
  deny?: string[];
  /**
   * Every connection starts with a PROXY protocol header (v1 or v2) from a
   * load balancer; the client it names is the one served, judged and logged.
   * @default {false}
   */
  proxyProtocol?: boolean;
  /** Told of every transfer's start and end (statistics, metrics); none when absent. */
  observer?: TransferObserver;
}

/**
 * What a shutdown did.
 *
 * @example
 * ```ts
 * import { serve, type ShutdownSummary } from "./server.ts";
 * const server = await serve(["poems/"], { iface: "127.0.0.1" });
 * const summary: ShutdownSummary = await server.shutdown();
 * console.log(summary.completed, summary["client left"], summary["cut short"]);
 * ```
 */
export interface ShutdownSummary extends TransferCounts {
  /** Accepts that failed, over all listeners. */
  acceptErrors: number;
  /** Connections closed for a missing, malformed or slow PROXY header. */
  badProxyHeaders: number;
  /** Whether the drain timeout ran out with transfers still going. */
  timedOut: boolean;
}

/**
 * Loads the poems and starts one listener per poem.
 *
 * @example
 * ```ts
 * import { serve } from "./server.ts";
 * const server = await serve(["poems/"], { port: 0, iface: "127.0.0.1" });
 * for (const l of server.listeners) console.log(l.poem.path, l.addr.port);
 * await server.shutdown();
 * ```
 * @throws {UsageError} for poems that cannot be read or bad options.
 * @throws {StartupError} when a listener cannot start (port in use, ...).
 */
export async function serve(poemArgs: string[], options: ServeOptions = {}): Promise<PoetryServer> {
  return PoetryServer.start(await loadPoems(poemArgs), options);
}

/**
 * A running server; see {@linkcode serve}.
 *
 * @example
 * ```ts
 * import { loadPoems } from "./poem.ts";
 * import { PoetryServer } from "./server.ts";
 * const server = PoetryServer.start(await loadPoems(["poems/"]), { iface: "127.0.0.1" });
 * await server.reload();
 * await server.shutdown(1);
 * ```
 */
export class PoetryServer {
  /** One listener per poem, in the order the poems were given. */
  readonly listeners: readonly PoemListener[];
  readonly #serving: Promise<void>[];
  readonly #wheel?: PaceWheel;
  readonly #drainTimeout: number;
  #shutdown?: Promise<ShutdownSummary>;
  /** Poem re-reads so far, by result (each re-read once, however many signals shared it). */
  readonly reloads: Record<"changed" | "unchanged" | "failed", number> = {
    changed: 0,
    unchanged: 0,
    failed: 0,
  };

  /** Whether {@linkcode PoetryServer.shutdown} has begun: no longer accepting. */
  get draining(): boolean {
    return this.#shutdown !== undefined;
  }

  private constructor(
    listeners: PoemListener[],
    wheel: PaceWheel | undefined,
    drainTimeout: number,
  ) {
    this.listeners = listeners;
    this.#wheel = wheel;
    this.#drainTimeout = drainTimeout;
    this.#serving = listeners.map((l) => l.serve());
  }

  /**
   * Starts a listener for each loaded poem.
   * @throws {StartupError} when a listener cannot start; those started are closed.
   */
  static start(poems: Poem[], options: ServeOptions = {}): PoetryServer {
    const iface = options.iface ?? "localhost";
    const firstPort = options.port ?? 0;
    if (firstPort > 0 && firstPort + poems.length - 1 > 65535) {
      throw new UsageError(
        `--port ${firstPort} leaves no room for ${poems.length} poems (ports end at 65535)`,
        "choose a lower --port",
      );
    }
    const wheel = options.pace && options.pace.delay > 0
      ? new PaceWheel(options.pace.delay)
      : undefined;
    const shared = {
      wheel,
      numBytes: options.pace?.numBytes,
      access: options.allow || options.deny ? new AccessList(options) : undefined,
      gate: options.maxConnections ? new ConnectionGate(options.maxConnections) : undefined,
      writeTimeout: options.writeTimeout,
      proxyProtocol: options.proxyProtocol,
      observer: options.observer,
    };
    const sockets: Deno.Listener[] = [];
    try {
      for (const [i, poem] of poems.entries()) {
        const port = firstPort === 0 ? 0 : firstPort + i;
        sockets.push(listenOrExplain(iface, port, poem.path));
      }
    } catch (err) {
      for (const socket of sockets) socket.close();
      throw err;
    }
    const listeners = sockets.map((socket, i) => new PoemListener(socket, poems[i], shared));
    for (const listener of listeners) {
      log.info("Serving {poem} ({size} bytes) on {address}.", {
        poem: listener.poem.path,
        size: listener.poem.content.size,
        address: formatAddress(listener.addr),
      });
    }
    return new PoetryServer(listeners, wheel, options.drainTimeout ?? 10);
  }

  /**
   * Re-reads every poem, each on its own: a poem that is slow to read does not
   * hold back the others. A poem that cannot be read keeps its old bytes and
   * the failure is logged; transfers in flight keep the bytes they started with.
   * @returns how many poems changed and how many could not be read.
   */
  async reload(): Promise<{ changed: number; failed: number }> {
    const results = await Promise.all(this.listeners.map(({ poem }) => this.reloadPoem(poem)));
    return {
      changed: results.filter((r) => r === "changed").length,
      failed: results.filter((r) => r === "failed").length,
    };
  }

  // Poem.reload coalesces: calls made during a re-read share one promise for
  // the next. Only the first holder of a promise logs its outcome, so a burst
  // of SIGHUPs logs once per re-read, not once per signal.
  readonly #reported = new WeakSet<Promise<boolean>>();

  /**
   * Re-reads one poem and logs the outcome, as {@linkcode PoetryServer.reload}
   * does for each; a poem that cannot be read keeps its old bytes.
   * @returns `"failed"` when the file could not be read.
   */
  async reloadPoem(poem: Poem): Promise<"changed" | "unchanged" | "failed"> {
    const reading = poem.reload();
    const first = !this.#reported.has(reading);
    this.#reported.add(reading);
    try {
      const changed = await reading;
      if (first && changed) {
        log.info("Reloaded {poem}: now {size} bytes.", {
          poem: poem.path,
          size: poem.content.size,
        });
      } else if (first) {
        log.debug("Re-read {poem}: unchanged.", { poem: poem.path });
      }
      if (first) this.reloads[changed ? "changed" : "unchanged"]++;
      return changed ? "changed" : "unchanged";
    } catch (err) {
      if (first) {
        log.error("Could not reload {poem}, keeping the old version: {error}", {
          poem: poem.path,
          error: err instanceof Error ? err.message : String(err),
        });
      }
      if (first) this.reloads.failed++;
      return "failed";
    }
  }

  /**
   * Stops accepting at once, lets transfers in flight finish for up to
   * `drainTimeout` seconds, then closes what remains. Safe to call twice.
   */
  shutdown(drainTimeout: number = this.#drainTimeout): Promise<ShutdownSummary> {
    this.#shutdown ??= this.#drain(drainTimeout);
    return this.#shutdown;
  }

  async #drain(drainTimeout: number): Promise<ShutdownSummary> {
    const inFlight = this.listeners.reduce((n, l) => n + l.activeCount, 0);
    for (const listener of this.listeners) listener.close();
    log.info("Stopped accepting; draining {inFlight} transfers for up to {seconds} s.", {
      inFlight,
      seconds: drainTimeout,
    });
    const cut = await Promise.all(this.listeners.map((l) => l.drain(drainTimeout)));
    await Promise.all(this.#serving);
    this.#wheel?.clear();
    const summary: ShutdownSummary = {
      ...emptyCounts(),
      acceptErrors: 0,
      badProxyHeaders: 0,
      timedOut: false,
    };
    for (const listener of this.listeners) {
      for (const [key, n] of Object.entries(listener.counts)) {
        summary[key as keyof TransferCounts] += n;
      }
      summary.acceptErrors += listener.acceptErrors;
      summary.badProxyHeaders += listener.badProxyHeaders;
    }
    summary.timedOut = cut.some((n) => n > 0);
    // The same words as the per-connection records.
    const totals = [...OUTCOMES, "denied"].map((key) =>
      `${summary[key as keyof TransferCounts]} ${key}`
    );
    if (this.listeners.some((l) => l.proxyProtocol)) {
      totals.push(`${summary.badProxyHeaders} bad PROXY header`);
    }
    log.info("Shut down: {totals}.", { totals: totals.join(", "), ...summary });
    return summary;
  }
}

function listenOrExplain(hostname: string, port: number, poem: string): Deno.Listener {
  const where = `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
  try {
    return Deno.listen({ hostname, port, transport: "tcp" });
  } catch (err) {
    if (err instanceof Deno.errors.AddrInUse) {
      throw new StartupError(
        `cannot serve ${poem}: ${where} is already in use`,
        "stop the other server, or choose another --port (0 picks a free one)",
      );
    }
    if (err instanceof Deno.errors.AddrNotAvailable) {
      throw new StartupError(
        `cannot listen on ${hostname}: not an address of this machine`,
        "use one of this machine's addresses, e.g. --iface 127.0.0.1",
      );
    }
    if (err instanceof Deno.errors.NotCapable) {
      throw new UsageError(
        `no permission to listen on ${where}`,
        `run again with --allow-net (or --allow-net=${hostname})`,
      );
    }
    if (err instanceof Deno.errors.PermissionDenied) {
      throw new StartupError(
        `not allowed to listen on ${where}`,
        "ports below 1024 need privileges; choose a higher --port",
      );
    }
    const message = err instanceof Error ? err.message : String(err);
    if (/lookup|resolve|name or service|nodename|no such host/i.test(message)) {
      throw new StartupError(
        `cannot resolve --iface ${hostname}: ${message}`,
        "use an IP address or a name this machine can resolve, e.g. localhost",
      );
    }
    throw new StartupError(`cannot listen on ${where}: ${message}`);
  }
}
