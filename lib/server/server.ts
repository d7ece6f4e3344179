/**
 * A poetry server: one listener per poem, sharing a pace, a connection cap
 * and an access list; reload, graceful shutdown.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { AccessList } from "../policies/access.ts";
import { StartupError, UsageError } from "../base/errors.ts";
import {
  ConnectionGate,
  COUNTED,
  emptyCounts,
  formatAddress,
  PoemListener,
  type PoemListenerOptions,
  type TransferCounts,
  type TransferObserver,
} from "../core/listener.ts";
import { type Pace, PaceWheel } from "../core/pace.ts";
import { loadPoems, Poem } from "../core/poem.ts";
import { type Fault, ListenerFaults, parseFault, randomSeed } from "../fixture/faults.ts";
import { ResettableListener } from "../fixture/reset_listener.ts";
import { SharedGate } from "../policies/shared_cap.ts";

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
  /**
   * Faults on purpose for every listener that does not set its own, as
   * `--fault` specs (`"reset-after=100,probability=0.5"`) or parsed ones.
   * None when absent: the normal path.
   */
  faults?: (string | Fault)[];
  /** Starts every listener's random sequence, for faults that repeat run after run. @default {random, logged} */
  seed?: number;
  /**
   * More listeners, each with its own settings; what one leaves out comes
   * from these options. Served after the poems given to {@linkcode serve}.
   */
  listeners?: ListenerSettings[];
  /**
   * Listen with `SO_REUSEPORT`, so that other sockets (other workers) can
   * accept on the same addresses and the kernel spreads clients over them.
   * Needs the `net` unstable feature. @default {false}
   */
  reusePort?: boolean;
  /**
   * Each listener's port, in order, instead of `port` and the listeners'
   * own: a worker joins addresses another thread has bound (with `--port 0`,
   * only then known).
   */
  ports?: number[];
  /**
   * The connection caps' counters to share, from another server's
   * {@linkcode PoetryServer.caps}: a worker joining it keeps each cap
   * together with it. With `reusePort` and none given, the server makes
   * them shareable.
   */
  caps?: SharedArrayBuffer;
}

/**
 * One listener's own settings, as a `--config` file's `listeners` give them.
 *
 * @example
 * ```ts
 * import type { ListenerSettings } from "./server.ts";
 * const flaky: ListenerSettings = {
 *   poem: "poems/ode-to-the-socket.txt",
 *   port: 10002,
 *   faults: ["reset-after=100,probability=0.3", "first-byte-delay=0.5"],
 * };
 * ```
 */
export interface ListenerSettings {
  /** The poem file; {@linkcode serve} loads a path, {@linkcode PoetryServer.start} needs it loaded. */
  poem: string | Poem;
  /** Its port; 0 picks a free one. @default {0} */
  port?: number;
  /** Address to listen on. @default {ServeOptions.iface} */
  iface?: string;
  /** Slow mode for this listener. @default {ServeOptions.pace} */
  pace?: Pace;
  /** Its faults; `[]` for none even when {@linkcode ServeOptions.faults} has some. */
  faults?: (string | Fault)[];
  /** Address blocks it serves. @default {ServeOptions.allow} */
  allow?: string[];
  /** Address blocks it never serves. @default {ServeOptions.deny} */
  deny?: string[];
  /** Most of its transfers at once, within {@linkcode ServeOptions.maxConnections}. @default {undefined} no cap of its own */
  maxConnections?: number;
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
  const poems = await loadPoems(poemArgs);
  const listeners = options.listeners && await Promise.all(
    options.listeners.map(async (l) => ({
      ...l,
      poem: typeof l.poem === "string" ? (await loadPoems([l.poem]))[0] : l.poem,
    })),
  );
  const server = PoetryServer.start(poems, { ...options, listeners });
  try {
    await server.ready;
  } catch (err) {
    await server.shutdown(0);
    throw err;
  }
  return server;
}

/**
 * A running server; see {@linkcode serve}.
 *
 * @example
 * ```ts
 * import { loadPoems } from "../core/poem.ts";
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
  /** One pace wheel per delay, shared by the listeners with that delay. */
  readonly #wheels: Map<number, PaceWheel>;
  readonly #drainTimeout: number;
  /** Each listener's options, the object it reads: a reconfigure changes them in place. */
  readonly #settings: ListenerState[];
  /**
   * Resolves once every listener accepts: a listener that can reset binds
   * through `node:net`, which only says so later. {@linkcode serve} waits.
   */
  readonly ready: Promise<void>;
  /**
   * The connection caps' shared counters, when the server listens with
   * `reusePort`: give them to the workers that join it
   * ({@linkcode ServeOptions.caps}).
   */
  readonly caps?: SharedArrayBuffer;
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
    wheels: Map<number, PaceWheel>,
    drainTimeout: number,
    settings: ListenerState[],
    ready: Promise<void>,
    caps: SharedArrayBuffer | undefined,
  ) {
    this.caps = caps;
    this.listeners = listeners;
    this.#wheels = wheels;
    this.#drainTimeout = drainTimeout;
    this.#settings = settings;
    this.ready = ready;
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
    const wheels = new Map<number, PaceWheel>();
    const count = poems.length + (options.listeners?.length ?? 0);
    if (options.ports && options.ports.length !== count) {
      throw new StartupError(
        `${count} listeners to start on ${options.ports.length} ports: the poems changed meanwhile`,
        "start again",
      );
    }
    // Counter 0 is the server's cap, 1 + i listener i's own.
    const caps = options.caps ??
      (options.reusePort
        ? new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT * (1 + count))
        : undefined);
    const gateFor = (max: number, index: number) =>
      caps ? new SharedGate(max, caps, index) : new ConnectionGate(max);
    const gate = options.maxConnections ? gateFor(options.maxConnections, 0) : undefined;
    const seed = options.seed ?? randomSeed();
    const sharedAccess = options.allow || options.deny ? new AccessList(options) : undefined;
    const states: ListenerState[] = [
      ...poems.map((poem, i): ListenerSettings => ({
        poem,
        port: firstPort === 0 ? 0 : firstPort + i,
      })),
      ...(options.listeners ?? []),
    ].map((own, index) => {
      if (!(own.poem instanceof Poem)) {
        throw new UsageError(
          `listener ${index}: the poem ${own.poem} is not loaded`,
          "use serve()",
        );
      }
      const cap = own.maxConnections;
      const state: ListenerState = {
        poem: own.poem,
        iface: own.iface ?? iface,
        // As configured (0 for any), which a reconfigure compares with;
        // a worker binds the port the main thread got (options.ports).
        port: own.port ?? 0,
        seed: (seed + Math.imul(index, 0x9e3779b9)) >>> 0,
        runSeed: seed,
        options: {
          writeTimeout: options.writeTimeout,
          proxyProtocol: options.proxyProtocol,
          observer: options.observer,
          access: own.allow || own.deny
            ? new AccessList({ allow: own.allow, deny: own.deny })
            : sharedAccess,
          gate: cap
            ? (gate ? new NestedGate(gateFor(cap, 1 + index), gate) : gateFor(cap, 1 + index))
            : gate,
        },
      };
      applyPaceAndFaults(state, own.pace ?? options.pace, own.faults ?? options.faults, wheels);
      return state;
    });
    let sockets: (Deno.Listener | ResettableListener)[] = [];
    try {
      for (const [i, state] of states.entries()) {
        const port = options.ports?.[i] ?? state.port;
        sockets.push(
          listenOrExplain(state.iface, port, state.poem.path, {
            reusePort: options.reusePort ?? false,
            joining: options.ports !== undefined,
          }),
        );
        state.resettable = state.options.faults?.resets ?? false;
      }
    } catch (err) {
      for (const socket of sockets) socket.close();
      throw err;
    }
    // Only a listener that may reset accepts through node:net: bound by Deno
    // first, for the same address and the same errors, then handed over once
    // every listener is bound, so that no other `--port 0` listener of this
    // server is given the port in the moment it is free.
    sockets = sockets.map((socket, i) => {
      if (!states[i].resettable) return socket;
      const addr = socket.addr as Deno.NetAddr;
      socket.close();
      return new ResettableListener(addr, options.reusePort ?? false);
    });
    const listeners = sockets.map((socket, i) =>
      new PoemListener(socket as Deno.Listener, states[i].poem, states[i].options)
    );
    for (const [i, listener] of listeners.entries()) {
      log.info("Serving {poem} ({size} bytes) on {address}.", {
        poem: listener.poem.path,
        size: listener.poem.content.size,
        address: formatAddress(listener.addr),
      });
      logFaults(listener, states[i]);
    }
    const ready = Promise.all(sockets.map(async (socket, i) => {
      if (!(socket instanceof ResettableListener)) return;
      await socket.ready.catch((err) => {
        throw new StartupError(
          `cannot listen on ${formatAddress(socket.addr)} for ${
            states[i].poem.path
          }: ${err.message}`,
        );
      });
    })).then(() => {});
    ready.catch(() => {});
    return new PoetryServer(listeners, wheels, options.drainTimeout ?? 10, states, ready, caps);
  }

  /**
   * Applies new settings to the listeners there are (a `--config` re-read on
   * SIGHUP): their faults and paces change for the clients that come next.
   * A listener added or removed, or a poem, port or address changed, needs
   * a restart; that is logged and the rest applied. So is a new
   * `reset-after` on a listener started without one (it must listen
   * through `node:net` from the start).
   * @returns how many listeners changed.
   */
  reconfigure(listeners: ListenerSettings[], defaults: ServeOptions = {}): number {
    if (listeners.length !== this.#settings.length) {
      log.warning(
        "The configuration now has {now} listeners, not {then}: adding or removing a listener needs a restart.",
        { now: listeners.length, then: this.#settings.length },
      );
    }
    let changed = 0;
    for (const [i, state] of this.#settings.entries()) {
      const own = listeners[i];
      if (!own) break;
      const path = own.poem instanceof Poem ? own.poem.path : own.poem;
      const iface = own.iface ?? defaults.iface ?? "localhost";
      if (path !== state.poem.path || iface !== state.iface || (own.port ?? 0) !== state.port) {
        log.warning(
          "Listener {index} ({poem} on {address}) changed its poem, port or address: that needs a restart; its faults and pace are kept.",
          {
            index: i,
            poem: state.poem.path,
            address: formatAddress(this.listeners[i].addr),
          },
        );
        continue;
      }
      const before = state.options.faults?.faults.map((f) => f.label + f.probability).join();
      const pace = state.pace;
      try {
        const next = { ...state, options: { ...state.options } };
        applyPaceAndFaults(
          next,
          own.pace ?? defaults.pace,
          own.faults ?? defaults.faults,
          this.#wheels,
        );
        if (next.options.faults?.resets && !state.resettable) {
          throw new UsageError("reset-after needs a restart: this listener was started without it");
        }
        const after = next.options.faults?.faults.map((f) => f.label + f.probability).join();
        if (
          before === after && next.pace?.delay === pace?.delay &&
          next.pace?.numBytes === pace?.numBytes
        ) {
          continue;
        }
        // Keep the sequence when the faults are the same: the run stays reproducible.
        if (before === after) next.options.faults = state.options.faults;
        Object.assign(state.options, next.options);
        state.pace = next.pace;
        changed++;
        logFaults(this.listeners[i], state, "Reconfigured");
      } catch (err) {
        log.error("Listener {index} ({address}) keeps its settings: {error}", {
          index: i,
          address: formatAddress(this.listeners[i].addr),
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
    return changed;
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

  /** Seconds {@linkcode PoetryServer.shutdown} lets transfers finish unless told otherwise. */
  get drainTimeout(): number {
    return this.#drainTimeout;
  }

  /**
   * Stops accepting at once, lets transfers in flight finish for up to
   * `drainTimeout` seconds, then closes what remains. Safe to call twice.
   * `others` are servers draining alongside (workers): their transfers are
   * counted in the log records and added to the summary.
   */
  shutdown(
    drainTimeout: number = this.#drainTimeout,
    others?: OtherDrains,
  ): Promise<ShutdownSummary> {
    this.#shutdown ??= this.#drain(drainTimeout, others);
    return this.#shutdown;
  }

  async #drain(drainTimeout: number, others?: OtherDrains): Promise<ShutdownSummary> {
    let inFlight = this.listeners.reduce((n, l) => n + l.activeCount, 0);
    for (const listener of this.listeners) listener.close();
    if (others) inFlight += await others.inFlight;
    log.info("Stopped accepting; draining {inFlight} transfers for up to {seconds} s.", {
      inFlight,
      seconds: drainTimeout,
    });
    const cut = await Promise.all(this.listeners.map((l) => l.drain(drainTimeout)));
    await Promise.all(this.#serving);
    for (const wheel of this.#wheels.values()) wheel.clear();
    const summary = addSummaries([
      ...this.listeners.map((l) => ({
        ...l.counts,
        acceptErrors: l.acceptErrors,
        badProxyHeaders: l.badProxyHeaders,
        timedOut: false,
      })),
      ...(others ? await others.done : []),
    ]);
    summary.timedOut ||= cut.some((n) => n > 0);
    // The same words as the per-connection records.
    const totals = COUNTED.map((key) => `${summary[key]} ${key}`);
    if (this.listeners.some((l) => l.proxyProtocol)) {
      totals.push(`${summary.badProxyHeaders} bad PROXY header`);
    }
    log.info("Shut down: {totals}.", { totals: totals.join(", "), ...summary });
    return summary;
  }
}

/**
 * Servers that drain alongside one (its workers), as
 * {@linkcode PoetryServer.shutdown} takes them.
 *
 * @example
 * ```ts
 * import type { OtherDrains } from "./server.ts";
 * const none: OtherDrains = { inFlight: Promise.resolve(0), done: Promise.resolve([]) };
 * ```
 */
export interface OtherDrains {
  /** Their transfers in flight once they stopped accepting. */
  inFlight: Promise<number>;
  /** Their summaries, once drained. */
  done: Promise<ShutdownSummary[]>;
}

/**
 * The summaries of several servers (workers) as one: counts added, timed
 * out if any did.
 *
 * @example
 * ```ts
 * import { addSummaries, type ShutdownSummary } from "./server.ts";
 * const one: ShutdownSummary = {
 *   completed: 2, "client left": 0, "timed out": 0, "cut short": 0, error: 0, denied: 0,
 *   acceptErrors: 0, badProxyHeaders: 0, timedOut: false,
 * };
 * addSummaries([one, one]).completed; // 4
 * ```
 */
export function addSummaries(summaries: ShutdownSummary[]): ShutdownSummary {
  const total: ShutdownSummary = {
    ...emptyCounts(),
    acceptErrors: 0,
    badProxyHeaders: 0,
    timedOut: false,
  };
  for (const summary of summaries) {
    for (const key of COUNTED) total[key] += summary[key];
    total.acceptErrors += summary.acceptErrors;
    total.badProxyHeaders += summary.badProxyHeaders;
    total.timedOut ||= summary.timedOut;
  }
  return total;
}

/** A listener's settings as started, and the options object it reads. */
interface ListenerState {
  poem: Poem;
  iface: string;
  port: number;
  seed: number;
  /** The run's seed (`--seed`), which the log shows: the one to repeat a run with. */
  runSeed: number;
  pace?: Pace;
  options: PoemListenerOptions;
  /** Listens through node:net, so it can reset. */
  resettable?: boolean;
}

/** Sets a listener's pace (sharing one wheel per delay) and faults. */
function applyPaceAndFaults(
  state: ListenerState,
  pace: Pace | undefined,
  faults: (string | Fault)[] | undefined,
  wheels: Map<number, PaceWheel>,
): void {
  const delay = pace?.delay ?? 0;
  let wheel = wheels.get(delay);
  if (delay > 0 && !wheel) wheels.set(delay, wheel = new PaceWheel(delay));
  const parsed = faults?.map((f, i) => typeof f === "string" ? parseFault(f, `faults[${i}]`) : f);
  state.pace = pace;
  state.options.wheel = wheel;
  state.options.numBytes = pace?.numBytes;
  state.options.faults = parsed?.length ? new ListenerFaults(parsed, state.seed, delay) : undefined;
}

function logFaults(listener: PoemListener, state: ListenerState, verb = "Faults"): void {
  const faults = state.options.faults;
  if (!faults) {
    if (verb !== "Faults") {
      log.info("Reconfigured {address}: no faults.", { address: formatAddress(listener.addr) });
    }
    return;
  }
  log.info("{verb} on {address}: {faults} (--seed {seed}).", {
    verb: verb === "Faults" ? "Faults" : "Reconfigured; faults",
    address: formatAddress(listener.addr),
    faults: faults.faults.map((f) =>
      f.probability < 1 ? `${f.label},probability=${f.probability}` : f.label
    ).join("; "),
    seed: state.runSeed,
  });
  if (faults.faults.some((f) => f.name === "jitter") && faults.delay === 0) {
    log.warning("jitter on {address} does nothing in fast mode: set a pace (--delay).", {
      address: formatAddress(listener.addr),
    });
  }
}

/** A listener's own cap inside the server's: a slot of its own first, then a shared one. */
class NestedGate extends ConnectionGate {
  readonly #inner: ConnectionGate;
  readonly #outer: ConnectionGate;
  constructor(inner: ConnectionGate, outer: ConnectionGate) {
    super(inner.max);
    this.#inner = inner;
    this.#outer = outer;
  }
  override get open(): number {
    return this.#inner.open;
  }
  override async reserve(signal?: AbortSignal): Promise<boolean> {
    if (!(await this.#inner.reserve(signal))) return false;
    if (await this.#outer.reserve(signal)) return true;
    this.#inner.release();
    return false;
  }
  override release(): void {
    this.#outer.release();
    this.#inner.release();
  }
}

function listenOrExplain(
  hostname: string,
  port: number,
  poem: string,
  { reusePort, joining }: { reusePort: boolean; joining: boolean },
): Deno.Listener {
  const where = `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
  try {
    // With SO_REUSEPORT a bind succeeds on a port that another program of
    // the same user holds the same way, and the two would silently split
    // its clients: a second `poetry --workers 2 --port 10000` must fail as
    // it does without workers. So the first bind of a port is tried
    // without it (a moment's gap before the real bind; workers joining
    // this server's ports skip it).
    if (reusePort && !joining && port !== 0) {
      Deno.listen({ hostname, port, transport: "tcp" }).close();
    }
    return Deno.listen({ hostname, port, transport: "tcp", reusePort });
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
    if (/too many open files/i.test(message)) {
      throw new StartupError(
        `cannot listen on ${where}: ${message}`,
        "each poem takes a socket in every worker: raise the open-file limit (ulimit -n), or serve fewer poems or --workers",
      );
    }
    if (/lookup|resolve|name or service|nodename|no such host/i.test(message)) {
      throw new StartupError(
        `cannot resolve --iface ${hostname}: ${message}`,
        "use an IP address or a name this machine can resolve, e.g. localhost",
      );
    }
    throw new StartupError(`cannot listen on ${where}: ${message}`);
  }
}
