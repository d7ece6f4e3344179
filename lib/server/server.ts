/**
 * A poetry server: one listener per poem, sharing a pace, a connection cap
 * and an access list; reload, graceful shutdown.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { formatAddress } from "../base/address.ts";
import { StartupError, UsageError } from "../base/errors.ts";
import { ConnectionCap, NestedCap } from "../core/cap.ts";
import { PoemListener } from "../core/listener.ts";
import type { PaceWheel } from "../core/pace.ts";
import { loadPoems, Poem } from "../core/poem.ts";
import { randomSeed } from "../fixture/fault_spec.ts";
import { ResettableListener } from "../fixture/reset_listener.ts";
import { SharedCap } from "../policies/shared_cap.ts";
import {
  accessFor,
  applyPaceAndFaults,
  factoryFor,
  faultsApplied,
  faultSpecs,
  type ListenerState,
  listenOrExplain,
  logFaults,
} from "./listeners.ts";
import type { ListenerSettings, ServeOptions } from "./options.ts";
import { PoemRereads } from "./reload.ts";
import {
  addSummaries,
  type FaultsApplied,
  faultsText,
  type OtherDrains,
  outcomesText,
  type ShutdownSummary,
} from "./summary.ts";

const log = getLogger(["poetry", "server"]);

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
  const directories = [];
  for (const arg of poemArgs) {
    if ((await Deno.stat(arg).catch(() => undefined))?.isDirectory) directories.push(arg);
  }
  const listeners = options.listeners && await Promise.all(
    options.listeners.map(async (l) => ({
      ...l,
      poem: typeof l.poem === "string" ? (await loadPoems([l.poem]))[0] : l.poem,
    })),
  );
  const server = PoetryServer.start(poems, { ...options, listeners });
  server.directories = directories;
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
  readonly #rereads = new PoemRereads();
  /** Poem re-reads so far, by result (each re-read once, however many signals shared it). */
  get reloads(): Readonly<Record<"changed" | "unchanged" | "failed", number>> {
    return this.#rereads.counts;
  }

  /**
   * The POEM arguments that named a directory: a file new in one would be
   * served after a restart (`--watch` says so). Set by {@linkcode serve}.
   */
  directories: readonly string[] = [];

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
    const capFor = (max: number, index: number) =>
      caps ? new SharedCap(max, caps, index) : new ConnectionCap(max);
    const serverCap = options.maxConnections ? capFor(options.maxConnections, 0) : undefined;
    const seed = options.seed ?? randomSeed();
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
      const access = accessFor(own, options);
      const state: ListenerState = {
        poem: own.poem,
        iface: own.iface ?? iface,
        // As configured (0 for any), which a reconfigure compares with;
        // a worker binds the port the main thread got (options.ports).
        port: own.port ?? 0,
        seed: (seed + Math.imul(index, 0x9e3779b9)) >>> 0,
        accessText: access.text,
        runSeed: seed,
        options: {
          writeTimeout: options.writeTimeout,
          proxyProtocol: options.proxyProtocol,
          observer: options.observer,
          access: access.access,
          cap: cap
            ? (serverCap
              ? new NestedCap(capFor(cap, 1 + index), serverCap)
              : capFor(cap, 1 + index))
            : serverCap,
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
      new PoemListener(
        socket as Deno.Listener,
        states[i].poem,
        states[i].options,
        factoryFor(states[i].options),
      )
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
          throw new UsageError(
            "reset-after and reset-at need a restart: this listener was started without them",
          );
        }
        const after = next.options.faults?.faults.map((f) => f.label + f.probability).join();
        const access = accessFor(own, defaults);
        next.options.access = access.access;
        const accessChanged = access.text !== state.accessText;
        if (
          before === after && next.pace?.delay === pace?.delay &&
          next.pace?.numBytes === pace?.numBytes && !accessChanged
        ) {
          continue;
        }
        // Keep the sequence when the faults are the same: the run stays reproducible.
        if (before === after) next.options.faults = state.options.faults;
        Object.assign(state.options, next.options);
        this.listeners[i].factory = factoryFor(state.options);
        state.pace = next.pace;
        changed++;
        logFaults(this.listeners[i], state, "Reconfigured");
        if (accessChanged) {
          state.accessText = access.text;
          log.info("Reconfigured {address}: --allow {allow}, --deny {deny}.", {
            address: formatAddress(this.listeners[i].addr),
            allow: JSON.parse(access.text)[0].join(" ") || "(everyone)",
            deny: JSON.parse(access.text)[1].join(" ") || "(no one)",
          });
        }
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
   * A poem that did not change logs only at debug: the caller's record
   * (SIGHUP's) says how many did.
   * @returns how many poems were re-read, changed and could not be read.
   */
  // Spelt out, not ReloadResult: lib/mod.ts does not export that type.
  async reload(): Promise<{ poems: number; changed: number; failed: number }> {
    const results = await Promise.all(
      this.listeners.map(({ poem }) => this.#rereads.reread(poem, "debug")),
    );
    return {
      poems: results.length,
      changed: results.filter((r) => r === "changed").length,
      failed: results.filter((r) => r === "failed").length,
    };
  }

  /**
   * Re-reads one poem (`--watch`: its file changed) and logs the outcome, an
   * unchanged one included, since nothing else says what the change did.
   * A poem that cannot be read keeps its old bytes.
   * @returns `"failed"` when the file could not be read.
   */
  reloadPoem(poem: Poem): Promise<"changed" | "unchanged" | "failed"> {
    return this.#rereads.reread(poem, "info");
  }

  /** The fault specs listener `index` runs with now (a reload may change them); none: `[]`. */
  faultSpecs(index: number): string[] {
    return faultSpecs(this.#settings[index]?.options.faults);
  }

  /** Listener `index`'s transfers by the faults they got, its faults now listed with 0 too. */
  faultsApplied(index: number): FaultsApplied {
    return faultsApplied(this.listeners[index], this.#settings[index]?.options.faults);
  }

  /** The run's `--seed`, which the log shows: each listener's faults draw from it. */
  get seed(): number {
    return this.#settings[0]?.runSeed ?? 0;
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
      ...this.listeners.map((l, i) => ({
        ...l.counts,
        acceptErrors: l.acceptErrors,
        badProxyHeaders: l.badProxyHeaders,
        timedOut: false,
        faultsApplied: this.faultsApplied(i),
      })),
      ...(others ? await others.done : []),
    ]);
    summary.timedOut ||= cut.some((n) => n > 0);
    // The same words as the per-connection records.
    let totals = outcomesText(summary, summary.faultsApplied);
    if (this.listeners.some((l) => l.proxyProtocol)) {
      totals += `, ${summary.badProxyHeaders} bad PROXY header`;
    }
    const faults = faultsText(summary.faultsApplied);
    if (faults) totals += `; ${faults}`;
    log.info("Shut down: {totals}.", { totals, ...summary });
    return summary;
  }
}
