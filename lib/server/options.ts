/**
 * What {@linkcode serve} is told: the server's options, and each
 * listener's own settings (a `--config` file's `listeners`).
 *
 * @module
 */

import type { TransferObserver } from "../core/listener.ts";
import type { Pace } from "../core/pace.ts";
import type { Poem } from "../core/poem.ts";
import type { Fault } from "../fixture/fault_spec.ts";

/**
 * Options for {@linkcode serve}; the command line sets the same ones.
 *
 * @example
 * ```ts
 * import type { ServeOptions } from "./options.ts";
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
  /**
   * Every listener accepts through `node:net`, so that faults given at run
   * time (the control endpoint) may reset a connection. @default {false}:
   * only a listener started with `reset-after` does
   */
  resettable?: boolean;
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
 * import type { ListenerSettings } from "./options.ts";
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
  /** Its name as the control endpoint's proxy (`--control`). @default {derived from poem and port} */
  name?: string;
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
