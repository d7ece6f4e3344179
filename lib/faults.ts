/**
 * Faults on purpose, for testing clients: a server that cuts, resets,
 * stalls, delays or fragments a poem, as declared up front (`--fault`, or a
 * listener's `faults` in `--config`) and reproducibly (`--seed`).
 *
 * A listener with faults draws a {@linkcode ConnectionFaults} for each client
 * it accepts, in accept order, from its own seeded random sequence. The
 * sender never knows: it gets a {@linkcode FaultyConn} around the connection
 * and, for the cuts, a shorter poem. A listener without faults does none of
 * this, so the normal path costs nothing extra.
 *
 * @module
 */

import { UsageError } from "./errors.ts";
import type { PoemContent, PoemReader } from "./poem.ts";
import type { SenderConn, SendResult } from "./sender.ts";

/**
 * The fault names, in the order `--help` and the README list them.
 *
 * @example
 * ```ts
 * import { FAULT_NAMES } from "./faults.ts";
 * console.log(FAULT_NAMES.join(", "));
 * ```
 */
export const FAULT_NAMES = [
  "close-after",
  "reset-after",
  "stall-after",
  "first-byte-delay",
  "jitter",
  "chunks",
  "close-delay",
  "refuse",
] as const;

/**
 * A fault's name.
 *
 * @example
 * ```ts
 * import type { FaultName } from "./faults.ts";
 * const name: FaultName = "reset-after";
 * ```
 */
export type FaultName = typeof FAULT_NAMES[number];

/**
 * One declared fault, as {@linkcode parseFault} reads it.
 *
 * @example
 * ```ts
 * import { type Fault, parseFault } from "./faults.ts";
 * const fault: Fault = parseFault("close-after=100,probability=0.5");
 * console.log(fault.name, fault.value, fault.probability); // close-after 100 0.5
 * ```
 */
export interface Fault {
  /** What it does. */
  name: FaultName;
  /**
   * Bytes for the `-after` faults, seconds for the delays and jitter,
   * `[min, max]` bytes for `chunks`, nothing for `refuse`.
   */
  value?: number | readonly [number, number];
  /** Share of connections that get it, 0..1. @default {1} */
  probability: number;
  /** The spec without the probability, as the log shows it: `close-after=100`. */
  label: string;
}

const BYTE_FAULTS = new Set<FaultName>(["close-after", "reset-after", "stall-after"]);
const SECOND_FAULTS = new Set<FaultName>(["first-byte-delay", "jitter", "close-delay"]);
/** As for --delay: a day is more than any test waits. */
const MAX_SECONDS = 86_400;
const EXAMPLES = "e.g. reset-after=100, first-byte-delay=0.5, chunks=1-16, refuse,probability=0.1";

/**
 * Reads a fault spec: `name=value[,probability=P]`, or `refuse[,probability=P]`.
 * `where` names the spec in the error (`--fault`, or a field of a config file).
 *
 * @example
 * ```ts
 * import { parseFault } from "./faults.ts";
 * parseFault("chunks=1-16").value; // [1, 16]
 * parseFault("first-byte-delay=0.5").value; // 0.5
 * ```
 * @throws {UsageError} naming what is wrong, with an example in the hint.
 */
export function parseFault(spec: string, where = "--fault"): Fault {
  const bad = (what: string, hint = `use e.g. ${where} ${EXAMPLES.split(", ")[0]}`) =>
    new UsageError(`${where} '${spec}': ${what}`, hint);
  const [head, ...rest] = spec.trim().split(",");
  const eq = head.indexOf("=");
  const name = (eq < 0 ? head : head.slice(0, eq)).trim();
  const text = eq < 0 ? undefined : head.slice(eq + 1).trim();
  if (!isFaultName(name)) {
    throw bad(
      name === "" ? "no fault named" : `unknown fault '${name}'`,
      `faults are ${FAULT_NAMES.join(", ")} (${EXAMPLES})`,
    );
  }
  let probability = 1;
  for (const option of rest) {
    const match = /^\s*probability\s*=\s*(\S*)\s*$/.exec(option);
    // Any decimal number as JSON writes it (1e-300, 0.5e0, 1E0), and 1. and
    // .5; not hex, Infinity or NaN. -0 is 0; 1e400 is Infinity, out of range.
    const p = match && /^-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(match[1])
      ? Number(match[1]) + 0
      : NaN;
    if (!match) {
      throw bad(`unknown option '${option.trim()}'`, `the only option is probability=P (0 to 1)`);
    }
    if (!(p >= 0 && p <= 1)) {
      throw bad(
        `probability must be a number from 0 to 1, got '${match[1]}'`,
        `use e.g. ${where} ${name}${text === undefined ? "" : `=${text}`},probability=0.5`,
      );
    }
    probability = p;
  }
  if (name === "refuse") {
    if (text !== undefined) throw bad("refuse takes no value", `use ${where} refuse`);
    return { name, probability, label: name };
  }
  if (text === undefined || text === "") {
    throw bad(`${name} needs a value`, `use e.g. ${where} ${example(name)}`);
  }
  let value: Fault["value"];
  if (BYTE_FAULTS.has(name)) {
    value = /^\d+$/.test(text) ? Number(text) : NaN;
    if (!(value >= 0 && value <= 2 ** 53)) {
      throw bad(
        `${name} needs a whole number of bytes, got '${text}'`,
        `use e.g. ${example(name)}`,
      );
    }
  } else if (SECOND_FAULTS.has(name)) {
    value = /^(\d+\.?\d*|\.\d+)$/.test(text) ? Number(text) : NaN;
    if (!(value <= MAX_SECONDS)) {
      throw bad(
        `${name} needs seconds from 0 to ${MAX_SECONDS}, got '${text}'`,
        `use e.g. ${example(name)}`,
      );
    }
  } else {
    const match = /^(\d+)-(\d+)$/.exec(text);
    const [min, max] = match ? [Number(match[1]), Number(match[2])] : [NaN, NaN];
    if (!(min >= 1 && max >= min && max <= 2 ** 30)) {
      throw bad(
        `chunks needs a range MIN-MAX of bytes, 1 <= MIN <= MAX, got '${text}'`,
        `use e.g. ${example(name)}`,
      );
    }
    value = [min, max];
  }
  return { name, value, probability, label: `${name}=${text}` };
}

function example(name: FaultName): string {
  return EXAMPLES.split(", ").find((e) => e.startsWith(name)) ??
    `${name}=${SECOND_FAULTS.has(name) ? "0.5" : "100"}`;
}

function isFaultName(name: string): name is FaultName {
  return (FAULT_NAMES as readonly string[]).includes(name);
}

/**
 * A small, fast, seeded random sequence (mulberry32): the same seed gives
 * the same numbers on every platform, which `Math.random` cannot promise.
 *
 * @example
 * ```ts
 * import { SeededRandom } from "./faults.ts";
 * const a = new SeededRandom(42), b = new SeededRandom(42);
 * console.log(a.next() === b.next()); // true
 * ```
 */
export class SeededRandom {
  #state: number;

  /** A sequence that starts from `seed` (any number; only its low 32 bits count). */
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** The next number in [0, 1). */
  next(): number {
    return this.uint32() / 4294967296;
  }

  /** The next whole number in [0, 2^32). */
  uint32(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** The next whole number from `min` to `max`, both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
}

/**
 * A seed for when `--seed` is not given; logged, so the run can be repeated.
 *
 * @example
 * ```ts
 * import { randomSeed } from "./faults.ts";
 * console.log(randomSeed() < 2 ** 32); // true
 * ```
 */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

/**
 * The faults of one listener and its random sequence: each accepted client
 * draws its own {@linkcode ConnectionFaults} from it, in accept order, so
 * the same seed gives the same faults to the same sequence of connections.
 *
 * @example
 * ```ts
 * import { ListenerFaults, parseFault } from "./faults.ts";
 * const faults = new ListenerFaults([parseFault("close-after=10,probability=0.5")], 42);
 * const drawn = Array.from({ length: 8 }, () => faults.plan()?.labels ?? "-");
 * console.log(drawn.join(" ")); // the same line for seed 42, every run
 * ```
 */
export class ListenerFaults {
  /** The faults as declared. */
  readonly faults: readonly Fault[];
  /** The seed the sequence started from. */
  readonly seed: number;
  /** Slow mode's pause in seconds, which jitter adds to; 0 in fast mode. */
  readonly delay: number;
  readonly #random: SeededRandom;
  /** Cut versions of the poem, one per version and length, shared by the clients that get them. */
  readonly #cuts = new WeakMap<PoemContent, Map<number, PoemContent>>();

  /** Faults drawn from a sequence that starts at `seed`; `delay` is the listener's pace. */
  constructor(faults: readonly Fault[], seed: number, delay = 0) {
    this.faults = faults;
    this.seed = seed;
    this.delay = delay;
    this.#random = new SeededRandom(seed);
  }

  /** Whether some connection may be reset: the listener must be able to send a RST. */
  get resets(): boolean {
    return this.faults.some((f) => f.name === "reset-after" && f.probability > 0);
  }

  /**
   * Draws the next connection's faults; `undefined` when it gets none. Every
   * fault draws one number whatever its probability, and each connection
   * one seed of its own (chunk sizes, jitter), so one connection's writes
   * never shift another's draws.
   */
  plan(): ConnectionFaults | undefined {
    const applied: Fault[] = [];
    for (const fault of this.faults) {
      if (this.#random.next() < fault.probability) applied.push(fault);
    }
    const seed = this.#random.uint32();
    return applied.length > 0 ? new ConnectionFaults(applied, seed, this) : undefined;
  }

  /** `content` cut to its first `length` bytes, shared by every client that gets the same cut. */
  cut(content: PoemContent, length: number): PoemContent {
    if (length >= content.size) return content;
    let byLength = this.#cuts.get(content);
    if (!byLength) this.#cuts.set(content, byLength = new Map());
    let cut = byLength.get(length);
    if (!cut) byLength.set(length, cut = cutContent(content, length));
    return cut;
  }
}

/** The first `length` bytes of a poem version. */
function cutContent(content: PoemContent, length: number): PoemContent {
  const bytes = content.bytes?.subarray(0, length);
  return {
    path: content.path,
    size: length,
    bytes,
    open(): PoemReader {
      const reader = content.open();
      let left = length;
      return {
        async next(max) {
          const block = left > 0 ? await reader.next(Math.min(max, left)) : new Uint8Array(0);
          left -= block.length;
          return block;
        },
        close: () => reader.close(),
      };
    },
  };
}

/**
 * The pause between two pieces of a `chunks` fault: long enough for a
 * client on loopback to read each piece on its own, short enough that a
 * 20 KB poem in pieces of 1-64 bytes takes well under a second.
 */
const CHUNK_GAP_MS = 1;

/**
 * How a connection's transfer ends when a fault cuts it: a FIN after the
 * cut, a RST, a stall, or a close before the first byte.
 *
 * @example
 * ```ts
 * import type { Ending } from "./faults.ts";
 * const ending: Ending = "reset";
 * ```
 */
export type Ending = "close" | "reset" | "stall" | "refuse";

/**
 * The faults one connection got, and how they change it: the poem it is
 * sent (cut short for `close-after`, `reset-after`, `refuse`) and the
 * connection the sender writes to ({@linkcode FaultyConn}).
 *
 * Of several faults that end the transfer, `refuse` wins, then the one that
 * cuts after the fewest bytes; the others are dropped and not logged.
 *
 * @example
 * ```ts
 * import { ListenerFaults, parseFault } from "./faults.ts";
 * const faults = new ListenerFaults([parseFault("reset-after=10"), parseFault("jitter=0.1")], 1);
 * console.log(faults.plan()!.labels); // "reset-after=10, jitter=0.1"
 * ```
 */
export class ConnectionFaults {
  /** The faults that apply, as the log shows them. */
  readonly labels: string;
  /** How a cut ends the transfer, if one applies. */
  readonly ending?: Ending;
  /** Bytes before the cut. */
  readonly cutAfter: number = Infinity;
  readonly #applied: readonly Fault[];
  readonly #seed: number;
  readonly #listener: ListenerFaults;

  /** The faults `applied` to one connection; `seed` starts its own random sequence. */
  constructor(applied: readonly Fault[], seed: number, listener: ListenerFaults) {
    let ending: Fault | undefined;
    for (const fault of applied) {
      if (fault.name === "refuse") ending = fault;
      else if (!BYTE_FAULTS.has(fault.name) || ending?.name === "refuse") continue;
      else if (!ending || (fault.value as number) < (ending.value as number)) ending = fault;
    }
    this.#applied = applied.filter((f) =>
      f === ending || (!BYTE_FAULTS.has(f.name) && f.name !== "refuse")
    );
    this.labels = this.#applied.map((f) => f.label).join(", ");
    if (ending) {
      this.ending = ending.name === "refuse" ? "refuse" : ending.name.slice(
        0,
        ending.name.indexOf("-"),
      ) as Ending;
      this.cutAfter = ending.name === "refuse" ? 0 : ending.value as number;
    }
    this.#seed = seed;
    this.#listener = listener;
  }

  /** The poem version this client is sent: cut short when the fault closes, resets or refuses. */
  content(content: PoemContent): PoemContent {
    // A stall keeps the whole poem: the connection holds it back at the cut.
    if (this.ending === undefined || this.ending === "stall") return content;
    return this.#listener.cut(content, this.cutAfter);
  }

  /** The connection the sender writes to. */
  wrap(conn: FaultableConn): FaultyConn {
    const value = (name: FaultName) => this.#applied.find((f) => f.name === name)?.value;
    return new FaultyConn(conn, {
      random: new SeededRandom(this.#seed),
      ending: this.ending,
      stallAfter: this.ending === "stall" ? this.cutAfter : undefined,
      firstByteDelay: value("first-byte-delay") as number | undefined,
      // Jitter adds to slow mode's pauses; fast mode has none to add to.
      jitter: this.#listener.delay > 0 ? value("jitter") as number | undefined : undefined,
      delay: this.#listener.delay,
      chunks: value("chunks") as [number, number] | undefined,
      closeDelay: value("close-delay") as number | undefined,
    });
  }

  /**
   * The sender's result as the log shows it: the whole poem's size, the
   * faults, and for a reset whether `sent` is only an upper bound (the RST
   * drops what the kernel had not sent yet, and Deno shows no send queue).
   */
  report(result: SendResult, content: PoemContent): FaultedResult {
    const reported: FaultedResult = { ...result, total: content.size, faults: this.labels };
    if (this.ending === "reset" && result.sent === this.cutAfter) reported.atMost = true;
    return reported;
  }
}

/**
 * A transfer's result with the faults that applied to it.
 *
 * @example
 * ```ts
 * import type { FaultedResult } from "./faults.ts";
 * const r: FaultedResult = { sent: 10, total: 99, ms: 1, outcome: "completed", faults: "reset-after=10", atMost: true };
 * ```
 */
export interface FaultedResult extends SendResult {
  /** The faults, as the log shows them. */
  faults: string;
  /** `sent` is what the kernel took, an upper bound on what the client got (a reset). */
  atMost?: true;
}

/**
 * What a connection must offer to be faulted: what the sender uses, and
 * for `reset-after` a way to send a RST (see `lib/reset_listener.ts`).
 *
 * @example
 * ```ts
 * import type { FaultableConn } from "./faults.ts";
 * const viaDeno = (conn: Deno.Conn): FaultableConn => conn;
 * ```
 */
export interface FaultableConn extends SenderConn {
  /** Closes with a TCP RST (SO_LINGER 0) rather than a FIN. */
  reset?(): void;
  /** Sends small writes at once, as separate segments. */
  setNoDelay?(noDelay?: boolean): void;
}

/**
 * What a {@linkcode FaultyConn} does, in seconds and bytes.
 *
 * @example
 * ```ts
 * import { type FaultyConnOptions, SeededRandom } from "./faults.ts";
 * const options: FaultyConnOptions = { random: new SeededRandom(1), firstByteDelay: 0.5 };
 * ```
 */
export interface FaultyConnOptions {
  /** The connection's own random sequence (chunk sizes, jitter). */
  random: SeededRandom;
  /** How the transfer ends when the poem it was given has been sent. */
  ending?: Ending;
  /** Bytes written before the stall. */
  stallAfter?: number;
  /** Seconds before the first byte. */
  firstByteDelay?: number;
  /** Up to this many seconds added to each paced pause. */
  jitter?: number;
  /** The pace's pause in seconds, which jitter adds to. */
  delay?: number;
  /** Each write cut to a size drawn from `[min, max]` bytes, the pieces 1 ms apart. */
  chunks?: readonly [number, number];
  /** Seconds to keep the connection open after the last byte. */
  closeDelay?: number;
}

/**
 * A connection that misbehaves on purpose: a decorator the listener hands
 * the sender instead of the accepted connection, only when the listener has
 * faults. Writes may wait (first-byte delay, jitter), come out in random
 * pieces (chunks) or stop (stall); the end of the poem may wait (close
 * delay), reset (RST) or close at once (refuse).
 *
 * While it holds the connection on purpose, {@linkcode FaultyConn.holding}
 * is true and the listener's write timeout and lingering close leave it be:
 * a stall is not a client that stopped reading.
 *
 * @example
 * ```ts
 * import { FaultyConn, SeededRandom } from "./faults.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const { port } = listener.addr as Deno.NetAddr;
 * const client = Deno.connect({ hostname: "127.0.0.1", port });
 * const conn = new FaultyConn(await listener.accept(), {
 *   random: new SeededRandom(7),
 *   chunks: [1, 4],
 * });
 * console.log(await conn.write(new TextEncoder().encode("Hello, world\n"))); // 1 to 4
 * conn.close();
 * (await client).close();
 * listener.close();
 * ```
 */
export class FaultyConn implements FaultableConn {
  readonly #conn: FaultableConn;
  readonly #options: FaultyConnOptions;
  #written = 0;
  /** When the last paced write finished, for jitter; undefined before the first. */
  #lastWrite?: number;
  /** The last write took less than it was given: the next one is its rest, not a new pause. */
  #partial = false;
  #firstByteDelay: number;
  #holding = false;
  #ended = false;
  #closed = false;
  /** Ends the current hold when the connection is closed. */
  #cancel?: () => void;

  /** Wraps `conn` with the faults in `options`. */
  constructor(conn: FaultableConn, options: FaultyConnOptions) {
    this.#conn = conn;
    this.#options = options;
    this.#firstByteDelay = options.firstByteDelay ?? 0;
    // Without Nagle's algorithm each chunk leaves as its own segment, or
    // small writes would be merged on the wire and the chunks not seen.
    if (options.chunks) conn.setNoDelay?.(true);
  }

  /** The client's address. */
  get remoteAddr(): Deno.Addr {
    return this.#conn.remoteAddr;
  }

  /** Whether a fault holds the connection on purpose now (a delay or a stall). */
  get holding(): boolean {
    return this.#holding;
  }

  /** Bytes actually written to the client. */
  get written(): number {
    return this.#written;
  }

  /** Writes part of `p`, after the faults' waits; resolves with the bytes written. */
  async write(p: Uint8Array): Promise<number> {
    const options = this.#options;
    if (this.#firstByteDelay > 0) {
      const ms = this.#firstByteDelay * 1000;
      this.#firstByteDelay = 0;
      await this.#hold(ms);
    }
    if (options.jitter && this.#lastWrite !== undefined && !this.#partial) {
      const due = this.#lastWrite + (options.delay! + options.random.next() * options.jitter) *
          1000;
      await this.#hold(due - performance.now());
    }
    let size = p.length;
    if (options.chunks) {
      // A pause between pieces, as Toxiproxy's slicer has: pieces written
      // back to back pile up in the client's buffer and arrive as one read.
      if (this.#lastWrite !== undefined) await this.#hold(CHUNK_GAP_MS);
      size = Math.min(size, options.random.int(...options.chunks));
    }
    if (options.stallAfter !== undefined) {
      if (this.#written >= options.stallAfter) await this.#stall();
      size = Math.min(size, options.stallAfter - this.#written);
    }
    const n = await this.#conn.write(size === p.length ? p : p.subarray(0, size));
    this.#written += n;
    this.#partial = n < p.length;
    this.#lastWrite = performance.now();
    return n;
  }

  /** Ends the poem: at once (refuse), with a RST (reset), or with a FIN, after the close delay. */
  async closeWrite(): Promise<void> {
    const { ending, closeDelay } = this.#options;
    if (ending === "refuse") return this.#end(false);
    if (closeDelay) await this.#hold(closeDelay * 1000);
    if (ending === "reset") return this.#end(true);
    await this.#conn.closeWrite();
  }

  /** Reads input; after a reset or a refusal there is none (the sender's linger ends at once). */
  read(p: Uint8Array): Promise<number | null> {
    return this.#ended ? Promise.resolve(null) : this.#conn.read(p);
  }

  /** Closes the connection, ending any hold. */
  close(): void {
    this.#closed = true;
    this.#cancel?.();
    if (!this.#ended) this.#conn.close();
  }

  #end(reset: boolean): void {
    this.#ended = true;
    if (reset && this.#conn.reset) this.#conn.reset();
    else this.#conn.close();
  }

  /** Waits `ms` on purpose; a close ends the wait with an error. */
  async #hold(ms: number): Promise<void> {
    if (ms <= 0) return;
    await this.#holdUntil(
      new Promise((resolve) => {
        const timer = setTimeout(resolve, ms);
        this.#cancel = () => clearTimeout(timer);
      }),
    );
  }

  async #holdUntil<T>(wait: Promise<T>): Promise<T> {
    if (this.#closed) throw new Deno.errors.Interrupted("closed");
    const closed = Promise.withResolvers<never>();
    const cancelWait = this.#cancel;
    this.#cancel = () => {
      cancelWait?.();
      closed.reject(new Deno.errors.Interrupted("closed during a fault's wait"));
    };
    this.#holding = true;
    try {
      return await Promise.race([wait, closed.promise]);
    } finally {
      this.#holding = false;
      this.#cancel = undefined;
    }
  }

  /**
   * Sends nothing more and keeps the connection open until the client
   * leaves (its end of stream, or a reset), or the connection is closed.
   * Input is read and thrown away meanwhile, to see the client go.
   */
  async #stall(): Promise<never> {
    const discard = new Uint8Array(16 * 1024);
    await this.#holdUntil((async () => {
      while (await this.#conn.read(discard) !== null) {
        // Whatever a stalled client sends is dropped.
      }
    })());
    throw new Deno.errors.BrokenPipe("the client left during a stall");
  }
}
