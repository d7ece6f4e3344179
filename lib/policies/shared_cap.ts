/**
 * A connection cap that several workers keep together: its count lives in
 * shared memory, so `--max-connections 100 --workers 4` means 100 over all
 * four threads, not 100 each (the open-file limit they share is the
 * process's).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { ConnectionCap } from "../core/cap.ts";

const log = getLogger(["poetry", "listener"]);

/**
 * How long one wait for a slot lasts before the count is looked at again.
 * A release notifies every waiter, so this only bounds a wake-up lost to a
 * race (a release between the look at the count and the wait).
 */
const RECHECK_MS = 1000;

/**
 * A {@linkcode ConnectionCap} whose count is the `index`th 32-bit counter
 * of `counters` (a `SharedArrayBuffer`), shared by every cap made on it in
 * any worker. Waiting is `Atomics.waitAsync`: no thread blocks. Unlike the
 * local cap, it does not hand a freed slot to the longest waiter: the
 * waiters of all workers race for it.
 *
 * @example
 * ```ts
 * import { SharedCap } from "./shared_cap.ts";
 * const counters = new SharedArrayBuffer(4);
 * const cap = new SharedCap(10, counters, 0);
 * if (await cap.reserve()) cap.release();
 * ```
 */
export class SharedCap extends ConnectionCap {
  readonly #count: Int32Array;
  readonly #index: number;

  /** A cap of at most `max` transfers, counted in `counters` at `index`. */
  constructor(max: number, counters: SharedArrayBuffer, index: number) {
    super(max);
    this.#count = new Int32Array(counters);
    this.#index = index;
  }

  /** Slots in use, over all workers. */
  override get open(): number {
    return Atomics.load(this.#count, this.#index);
  }

  /**
   * Waits for a free slot and takes it.
   * @returns `false`, without a slot, when `signal` aborts first.
   */
  override async reserve(signal?: AbortSignal): Promise<boolean> {
    const count = this.#count;
    const i = this.#index;
    // One listener for the whole wait, removed at the end, and a fresh
    // promise per round that the abort, the notify or the re-check settles:
    // nothing is left behind on a signal that lives as long as its listener.
    let wake: (() => void) | undefined;
    const onAbort = () => wake?.();
    signal?.addEventListener("abort", onAbort, { once: true });
    let waited = false;
    try {
      while (!signal?.aborted) {
        const open = Atomics.load(count, i);
        if (open < this.max) {
          if (Atomics.compareExchange(count, i, open, open + 1) !== open) continue;
          // Logged when the cap is reached, not at each hand-over after.
          if (open + 1 === this.max && !waited) {
            log.info("At the cap of {max} transfers; the next client waits for one to end.", {
              max: this.max,
            });
          }
          return true;
        }
        const wait = Atomics.waitAsync(count, i, open, RECHECK_MS);
        if (!wait.async) continue;
        waited = true;
        let timer: ReturnType<typeof setTimeout> | undefined;
        await new Promise<void>((resolve) => {
          wake = resolve;
          wait.value.then(() => resolve());
          // A Deno timer beside the wait: a pending waitAsync alone does not
          // keep Deno's event loop alive.
          timer = setTimeout(resolve, RECHECK_MS);
        });
        clearTimeout(timer);
        wake = undefined;
      }
      return false;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Gives a slot back and wakes the waiters of every worker. */
  override release(): void {
    Atomics.sub(this.#count, this.#index, 1);
    Atomics.notify(this.#count, this.#index);
  }
}
