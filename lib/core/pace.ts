/**
 * Slow mode: the pace (`--num-bytes`, `--delay`) and the one scheduler that
 * paces every slow client.
 *
 * @module
 */

/**
 * How a slow poem is sent: `numBytes` bytes, then a pause of `delay` seconds.
 *
 * @example
 * ```ts
 * import type { Pace } from "./pace.ts";
 * const tutorialSlowServer: Pace = { numBytes: 10, delay: 0.1 };
 * ```
 */
export interface Pace {
  /** Bytes per write. @default {10} */
  numBytes: number;
  /** Seconds between writes; 0 means fast mode. @default {0} */
  delay: number;
}

/**
 * Something the wheel calls once per delay: a paced sender.
 *
 * @example
 * ```ts
 * import { type PacedTask, PaceWheel } from "./pace.ts";
 * const wheel = new PaceWheel(0.5);
 * const task: PacedTask = { onTick: (now) => console.log("tick at", now) };
 * wheel.schedule(task);
 * wheel.clear();
 * ```
 */
export interface PacedTask {
  /**
   * Called once per delay, starting one delay after it was scheduled, with
   * the tick's `performance.now()` (one clock read per tick, not per task).
   */
  onTick(now: number): void;
}

const chunkCache = new WeakMap<Uint8Array, Uint8Array[]>();

/**
 * The poem cut into `numBytes` views, made once per poem version and shared
 * by every paced client, rather than a new view per write. Measured with
 * 10,000 paced clients: 7.9–10.4 KB of memory per client with shared views,
 * 11.2–12.1 KB without (the delivered rate is the same). A poem that would
 * take more than `maxChunks` is not cut (`undefined`; a sender then takes a
 * view per write): cutting a 1 MiB poem at `--num-bytes 1` made a million
 * views at once, which held the event loop for a second and cost 160 MB.
 *
 * @example
 * ```ts
 * import { chunksOf } from "./pace.ts";
 * const chunks = chunksOf(new TextEncoder().encode("abcde"), 2)!;
 * chunks.length; // 3: "ab", "cd", "e"
 * ```
 */
export function chunksOf(
  bytes: Uint8Array,
  numBytes: number,
  maxChunks = 4096,
): Uint8Array[] | undefined {
  if (bytes.length > maxChunks * numBytes) return undefined;
  let chunks = chunkCache.get(bytes);
  if (chunks?.[0]?.length !== Math.min(numBytes, bytes.length)) {
    chunks = [];
    for (let at = 0; at < bytes.length; at += numBytes) {
      chunks.push(bytes.subarray(at, at + numBytes));
    }
    chunkCache.set(bytes, chunks);
  }
  return chunks;
}

/**
 * How many writes a poem of `size` bytes takes at this pace.
 *
 * @example
 * ```ts
 * import { writesNeeded } from "./pace.ts";
 * writesNeeded(25, { numBytes: 10, delay: 0.1 }); // 3
 * ```
 */
export function writesNeeded(size: number, pace: Pace): number {
  return Math.ceil(size / pace.numBytes);
}

/**
 * The least time a poem of `size` bytes takes at this pace, in seconds: the
 * first write goes at once, each later one after a delay.
 *
 * @example
 * ```ts
 * import { leastDuration } from "./pace.ts";
 * leastDuration(25, { numBytes: 10, delay: 0.1 }); // 0.2
 * ```
 */
export function leastDuration(size: number, pace: Pace): number {
  return Math.max(0, writesNeeded(size, pace) - 1) * pace.delay;
}

/**
 * A hashed timer wheel: one timer for all paced clients instead of one per
 * client. The delay is cut into slots of about `resolutionMs`; a task sits in
 * one slot and is called each time the wheel passes that slot, i.e. once per
 * delay, for as long as it stays scheduled. A late timer catches up on the
 * slots it missed, so the rate per client holds while the CPU keeps up.
 *
 * @example
 * ```ts
 * import { PaceWheel } from "./pace.ts";
 * const wheel = new PaceWheel(0.1);
 * let ticks = 0;
 * const task = { onTick: () => { if (++ticks === 3) wheel.cancel(task); } };
 * wheel.schedule(task);
 * ```
 */
export class PaceWheel {
  /** Seconds between a task's ticks. */
  readonly delay: number;
  readonly #slotMs: number;
  readonly #slots: Set<PacedTask>[];
  /** The absolute slot each task was added in. */
  readonly #added = new Map<PacedTask, number>();
  readonly #origin = performance.now();
  /** Absolute number of the last slot processed. */
  #done: number;
  #timer?: ReturnType<typeof setTimeout>;

  /**
   * A wheel for `delay` seconds, with slots of about `resolutionMs`. Slots of
   * 1 ms spread paced writes evenly: with 10 ms slots, 10,000 clients at
   * 0.1 s come due in bursts of 1,000 writes (issue 9's prototypes, and an
   * A/B here, delivered a higher share of the ideal rate with 1 ms).
   */
  constructor(delay: number, resolutionMs = 1) {
    this.delay = delay;
    const delayMs = Math.max(1, delay * 1000);
    // At most 1000 slots: a long delay gets coarser slots, not a huge array.
    const count = Math.min(1000, Math.max(1, Math.round(delayMs / resolutionMs)));
    this.#slotMs = delayMs / count;
    this.#slots = Array.from({ length: count }, () => new Set());
    this.#done = this.#now();
  }

  /** Number of tasks scheduled. */
  get size(): number {
    return this.#added.size;
  }

  /** Calls `task.onTick()` once per delay, first one delay from now. */
  schedule(task: PacedTask): void {
    this.cancel(task);
    const slot = this.#now();
    this.#added.set(task, slot);
    this.#slots[slot % this.#slots.length].add(task);
    if (this.#timer === undefined) this.#arm();
  }

  /** Stops calling `task`; it may be scheduled again later. */
  cancel(task: PacedTask): void {
    const slot = this.#added.get(task);
    if (slot === undefined) return;
    this.#added.delete(task);
    this.#slots[slot % this.#slots.length].delete(task);
  }

  /** Cancels every task and stops the timer. */
  clear(): void {
    for (const set of this.#slots) set.clear();
    this.#added.clear();
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #now(): number {
    return Math.floor((performance.now() - this.#origin) / this.#slotMs);
  }

  // Sleeps until the next slot that holds a task: with 1 ms slots and a few
  // clients, waking for every slot would cost a timer a millisecond for nothing.
  #arm(): void {
    const count = this.#slots.length;
    let next = this.#done + 1;
    while (next <= this.#done + count && this.#slots[next % count].size === 0) next++;
    const wait = Math.max(0, next * this.#slotMs + this.#origin - performance.now());
    this.#timer = setTimeout(this.#tick, wait);
  }

  #tick = (): void => {
    this.#timer = undefined;
    const clock = performance.now();
    const now = Math.floor((clock - this.#origin) / this.#slotMs);
    // After a stall of more than a whole turn, each slot runs once, not once
    // per turn missed: a paced client gets one write per tick at most.
    const from = Math.max(this.#done + 1, now - this.#slots.length + 1);
    for (let slot = from; slot <= now; slot++) {
      for (const task of this.#slots[slot % this.#slots.length]) {
        // A task added while its own slot is due waits a full turn.
        if (this.#added.get(task)! < slot) task.onTick(clock);
      }
    }
    this.#done = now;
    if (this.#added.size > 0) this.#arm();
  };
}
