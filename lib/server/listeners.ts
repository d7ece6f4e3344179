/**
 * Each listener's settings as the server keeps them, and what is built from
 * them: its pace, its faults, and the factory chain that decides each of its
 * connections (PROXY header, access list, faults, the poem), rebuilt when a
 * reload changes them. Also how a listening socket is opened, and its
 * failures explained.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { formatAddress } from "../base/address.ts";
import { StartupError, UsageError } from "../base/errors.ts";
import { PoemFactory, type SenderFactory } from "../core/connection.ts";
import { PoemListener, type PoemListenerOptions } from "../core/listener.ts";
import { type Pace, PaceWheel } from "../core/pace.ts";
import { Poem } from "../core/poem.ts";
import type { ConnectionCap } from "../core/cap.ts";
import { FaultFactory, ListenerFaults } from "../fixture/fault_plan.ts";
import { type Fault, FAULT_NAMES, parseFault } from "../fixture/fault_spec.ts";
import { ResettableListener } from "../fixture/reset_listener.ts";
import { AccessFactory, AccessList } from "../policies/access.ts";
import { ProxyHeaderFactory } from "../policies/proxied.ts";
import type { ListenerSettings, ServeOptions } from "./options.ts";
import type { FaultsApplied, ShutdownSummary } from "./summary.ts";

const log = getLogger(["poetry", "server"]);

/** A listener's options: its own, and what its factory chain is built from. */
export interface ListenerOptions extends PoemListenerOptions {
  /** Who may be served; everyone when absent. */
  access?: AccessList;
  /** Faults on purpose, drawn per connection; none when absent (the normal path). */
  faults?: ListenerFaults;
}

/** A listener's settings as started, and the options object it reads. */
export interface ListenerState {
  poem: Poem;
  /** Its name, when its settings gave one. */
  name?: string;
  iface: string;
  port: number;
  seed: number;
  /** The run's seed (`--seed`), which the log shows: the one to repeat a run with. */
  runSeed: number;
  pace?: Pace;
  options: ListenerOptions;
  /** Listens through node:net, so it can reset. */
  resettable?: boolean;
  /** The allow and deny lists it was given, as a reconfigure compares them. */
  accessText?: string;
}

/**
 * A listener's allow and deny lists: its own when it has either, else the
 * server's; and their text, to tell when a reconfigure changes them.
 */
export function accessFor(
  own: { allow?: string[]; deny?: string[] },
  server: { allow?: string[]; deny?: string[] },
): { access?: AccessList; text: string } {
  const lists = own.allow || own.deny
    ? { allow: own.allow, deny: own.deny }
    : { allow: server.allow, deny: server.deny };
  const access = lists.allow || lists.deny ? new AccessList(lists) : undefined;
  return { access, text: JSON.stringify([lists.allow ?? [], lists.deny ?? []]) };
}

/**
 * A listener's settings as the server keeps them, from its own settings and
 * the server's: `index` orders its seed, `cap` is the one it counts against.
 * @throws {UsageError} when its poem is not loaded, or a fault is malformed.
 */
export function listenerState(
  own: ListenerSettings,
  index: number,
  options: ServeOptions,
  seed: number,
  cap: ConnectionCap | undefined,
  wheels: Map<number, PaceWheel>,
): ListenerState {
  if (!(own.poem instanceof Poem)) {
    throw new UsageError(`listener ${index}: the poem ${own.poem} is not loaded`, "use serve()");
  }
  const access = accessFor(own, options);
  const state: ListenerState = {
    poem: own.poem,
    name: own.name,
    iface: own.iface ?? options.iface ?? "localhost",
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
      cap,
    },
  };
  applyPaceAndFaults(state, own.pace ?? options.pace, own.faults ?? options.faults, wheels);
  return state;
}

/** Sets a listener's pace (sharing one wheel per delay) and faults. */
export function applyPaceAndFaults(
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

/**
 * Gives a running listener new faults for the clients that come next;
 * its sequence starts again from its seed.
 * @throws {UsageError} for a malformed fault, or a reset on a listener that
 * cannot send one.
 */
export function setListenerFaults(
  listener: PoemListener,
  state: ListenerState,
  faults: (string | Fault)[],
  wheels: Map<number, PaceWheel>,
): void {
  const next = { ...state, options: { ...state.options } };
  applyPaceAndFaults(next, state.pace, faults, wheels);
  if (next.options.faults?.resets && !state.resettable) {
    throw new UsageError("a reset needs a listener started with one (or --control)");
  }
  Object.assign(state.options, next.options);
  listener.factory = factoryFor(state.options);
  logFaults(listener, state, "Reconfigured");
}

/** Logs a listener's faults at start, or what a reconfigure made of them. */
export function logFaults(listener: PoemListener, state: ListenerState, verb = "Faults"): void {
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
    faults: faultSpecs(faults).join("; "),
    seed: state.runSeed,
  });
  if (faults.faults.some((f) => f.name === "jitter") && faults.delay === 0) {
    log.warning("jitter on {address} does nothing in fast mode: set a pace (--delay).", {
      address: formatAddress(listener.addr),
    });
  }
}

/** A listener's faults as specs, as `--fault` takes them: `reset-after=100,probability=0.3`. */
export function faultSpecs(faults: ListenerFaults | undefined): string[] {
  return (faults?.faults ?? []).map((f) =>
    f.probability < 1 ? `${f.label},probability=${f.probability}` : f.label
  );
}

/**
 * A listener's faults applied so far, by fault name, in the order of the
 * fault table: each fault it has now (0 before a transfer gets it), and
 * each its transfers got (a reload may have dropped it since).
 */
export function faultsApplied(
  listener: PoemListener,
  faults: ListenerFaults | undefined,
): FaultsApplied {
  const names = new Set([
    ...(faults?.faults ?? []).map((f) => f.name),
    ...listener.faultsApplied.keys(),
  ]);
  const order = (name: string) => {
    const i = (FAULT_NAMES as readonly string[]).indexOf(name);
    return i < 0 ? FAULT_NAMES.length : i;
  };
  return Object.fromEntries(
    [...names].sort((a, b) => order(a) - order(b))
      .map((name) => [name, listener.faultsApplied.get(name) ?? 0]),
  );
}

/** One listener's part of a shutdown's summary. */
export function listenerSummary(listener: PoemListener): ShutdownSummary {
  return {
    ...listener.counts,
    acceptErrors: listener.acceptErrors,
    badProxyHeaders: listener.badProxyHeaders,
    timedOut: false,
    faultsApplied: faultsApplied(listener, undefined),
  };
}

/**
 * The factory chain for a listener's options, outermost first, as Twisted
 * wraps factories: the PROXY header names the client, the access list
 * checks it, the faults draw its plan, and the poem's factory builds its
 * sender. A listener without any of them gets the poem's factory alone.
 */
export function factoryFor(options: ListenerOptions): SenderFactory {
  let factory: SenderFactory = new PoemFactory(options);
  if (options.faults) factory = new FaultFactory(factory, options.faults);
  if (options.access && !options.access.open) factory = new AccessFactory(factory, options.access);
  if (options.proxyProtocol) factory = new ProxyHeaderFactory(factory);
  return factory;
}

/**
 * Opens a listener at run time on `port`, through `node:net` when it may
 * reset (`resettable`, or a reset among its faults), and logs its Serving
 * line. Serving it is the caller's.
 * @throws {StartupError} or {UsageError} saying what to do.
 */
export async function openListener(
  state: ListenerState,
  port: number,
  resettable: boolean,
): Promise<PoemListener> {
  let socket: Deno.Listener | ResettableListener = listenOrExplain(
    state.iface,
    port,
    state.poem.path,
    { reusePort: false, joining: false },
  );
  state.resettable = resettable || (state.options.faults?.resets ?? false);
  if (state.resettable) {
    const addr = socket.addr as Deno.NetAddr;
    socket.close();
    socket = new ResettableListener(addr);
    await socket.ready.catch((err) => {
      throw new StartupError(`cannot listen on ${formatAddress(addr)}: ${err.message}`);
    });
  }
  const listener = new PoemListener(
    socket as Deno.Listener,
    state.poem,
    state.options,
    factoryFor(state.options),
  );
  log.info("Serving {poem} ({size} bytes) on {address}.", {
    poem: listener.poem.path,
    size: listener.poem.content.size,
    address: formatAddress(listener.addr),
  });
  return listener;
}

/**
 * Opens a listening socket, or explains in one line why it cannot.
 * @throws {StartupError} or {UsageError} saying what to do.
 */
export function listenOrExplain(
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
