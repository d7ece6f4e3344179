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
import { loadPoems, type Poem } from "../core/poem.ts";
import { type Fault, randomSeed } from "../fixture/fault_spec.ts";
import { ResettableListener } from "../fixture/reset_listener.ts";
import { SharedCap } from "../policies/shared_cap.ts";
import {
  factoryFor,
  faultsApplied,
  faultSpecs,
  type ListenerState,
  listenerState,
  listenerSummary,
  listenOrExplain,
  logFaults,
  openListener,
  setListenerFaults,
} from "./listeners.ts";
import type { ListenerSettings, ServeOptions } from "./options.ts";
import { reconfigureListeners } from "./reconfigure.ts";
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

/** What a listener added at run time is built from; `count` orders its seed. */
type RuntimeBase = { options: ServeOptions; seed: number; cap?: ConnectionCap; count: number };

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
  readonly #listeners: PoemListener[];
  readonly #serving: Promise<void>[];
  /** Listeners closed at run time, whose transfers in flight are drained at shutdown. */
  readonly #retired = new Set<PoemListener>();
  /** What the retired listeners that have ended did, for the shutdown's summary. */
  #retiredCounts: ShutdownSummary = addSummaries([]);
  /** What a listener added at run time is built from. */
  readonly #base: RuntimeBase;
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
    base: RuntimeBase,
  ) {
    this.caps = caps;
    this.#listeners = listeners;
    this.#base = base;
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
      const cap = own.maxConnections;
      return listenerState(
        own,
        index,
        options,
        seed,
        cap
          ? (serverCap ? new NestedCap(capFor(cap, 1 + index), serverCap) : capFor(cap, 1 + index))
          : serverCap,
        wheels,
      );
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
        state.resettable = (options.resettable || state.options.faults?.resets) ?? false;
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
    return new PoetryServer(listeners, wheels, options.drainTimeout ?? 10, states, ready, caps, {
      options,
      seed,
      cap: serverCap,
      count: states.length,
    });
  }

  /** One listener per poem, in the order the poems were given, then those added at run time. */
  get listeners(): readonly PoemListener[] {
    return this.#listeners;
  }

  /**
   * Starts one more listener at run time (a new proxy of `--control`); its poem must be loaded.
   * @throws {StartupError} or {UsageError} when it cannot listen.
   */
  async addListener(settings: ListenerSettings): Promise<PoemListener> {
    const { options, seed, cap } = this.#base;
    const state = listenerState(settings, this.#base.count, options, seed, cap, this.#wheels);
    const listener = await this.#listen(state, state.port);
    this.#base.count++;
    this.#settings.push(state);
    this.#listeners.push(listener);
    return listener;
  }

  /** Closes a listener to new clients; transfers in flight finish. `remove`: out of the list too. */
  closeListener(listener: PoemListener, { remove = false } = {}): void {
    listener.close();
    const i = this.#listeners.indexOf(listener);
    if (remove && i >= 0) {
      this.#listeners.splice(i, 1);
      this.#settings.splice(i, 1);
    }
    if (remove || i < 0) this.#retire(listener);
    log.info("Stopped listening on {address} ({poem}); transfers in flight go on.", {
      address: formatAddress(listener.addr),
      poem: listener.poem.path,
    });
  }

  /**
   * Listens again on a closed listener's address with its settings, in its place.
   * @throws {StartupError} when the address is taken meanwhile.
   */
  async reopenListener(listener: PoemListener): Promise<PoemListener> {
    const i = this.#listeners.indexOf(listener);
    if (i < 0) throw new UsageError("this listener is not one of the server's");
    listener.close();
    const reopened = await this.#listen(this.#settings[i], listener.addr.port);
    this.#retire(listener);
    this.#listeners[i] = reopened;
    return reopened;
  }

  /**
   * Gives a listener new faults for the clients that come next (transfers in
   * flight keep theirs); its sequence starts again from its seed.
   * @throws {UsageError} for a malformed fault, or a reset on a listener
   * that cannot send one.
   */
  setFaults(listener: PoemListener, faults: (string | Fault)[]): void {
    const state = this.#settings[this.#listeners.indexOf(listener)];
    if (!state) throw new UsageError("this listener is not one of the server's");
    setListenerFaults(listener, state, faults, this.#wheels);
  }

  /** Opens a listener's socket and starts serving it. */
  async #listen(state: ListenerState, port: number): Promise<PoemListener> {
    if (this.draining) throw new StartupError("the server is shutting down");
    const listener = await openListener(state, port, this.#base.options.resettable ?? false);
    this.#serving.push(listener.serve());
    return listener;
  }

  /** Keeps a closed listener until its transfers end (at most a timer's ~24 days), then its counts. */
  #retire(listener: PoemListener): void {
    this.#retired.add(listener);
    listener.drain(2_147_483).then(() => {
      if (this.draining || !this.#retired.delete(listener)) return;
      this.#retiredCounts = addSummaries([this.#retiredCounts, listenerSummary(listener)]);
    });
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
    return reconfigureListeners(this.#listeners, this.#settings, this.#wheels, listeners, defaults);
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

  /** Listener `index`'s name from its settings (`--config`'s `name`), if it has one. */
  listenerName(index: number): string | undefined {
    return this.#settings[index]?.name;
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
    const all = [...this.#listeners, ...this.#retired];
    let inFlight = all.reduce((n, l) => n + l.activeCount, 0);
    for (const listener of all) listener.close();
    if (others) inFlight += await others.inFlight;
    log.info("Stopped accepting; draining {inFlight} transfers for up to {seconds} s.", {
      inFlight,
      seconds: drainTimeout,
    });
    const cut = await Promise.all(all.map((l) => l.drain(drainTimeout)));
    await Promise.all(this.#serving);
    for (const wheel of this.#wheels.values()) wheel.clear();
    const summary = addSummaries([
      ...this.#listeners.map((l, i) => ({
        ...listenerSummary(l),
        faultsApplied: this.faultsApplied(i),
      })),
      ...[...this.#retired].map(listenerSummary),
      this.#retiredCounts,
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
