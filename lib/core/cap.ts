/**
 * The connection cap (`--max-connections`, and a listener's own in
 * `--config`): Twisted's `LimitTotalConnectionsFactory`, except that a
 * client over the cap waits in the kernel's backlog instead of being closed.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";

const log = getLogger(["poetry", "listener"]);

/**
 * A cap on transfers in progress, shared by all listeners. A listener takes
 * a slot after it accepts a client and before it sends a byte; at the cap,
 * it holds that one client and stops accepting, so the kernel's backlog holds
 * the rest. Slots are handed out in the order they were asked for, so no
 * listener starves another.
 *
 * @example
 * ```ts
 * import { ConnectionCap } from "./cap.ts";
 * const cap = new ConnectionCap(10);
 * if (await cap.reserve()) cap.release();
 * ```
 */
export class ConnectionCap {
  /** Most transfers in progress at once. */
  readonly max: number;
  #open = 0;
  #waiters: (() => void)[] = [];

  /** A cap of at most `max` transfers. */
  constructor(max: number) {
    this.max = max;
  }

  /** Slots in use. */
  get open(): number {
    return this.#open;
  }

  /**
   * Waits for a free slot and takes it.
   * @returns `false`, without a slot, when `signal` aborts first.
   */
  async reserve(signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return false;
    if (this.#open < this.max) {
      // Logged once each time the cap is reached, not for every client after.
      if (++this.#open === this.max) {
        log.info("At the cap of {max} transfers; the next client waits for one to end.", {
          max: this.max,
        });
      }
      return true;
    }
    return await new Promise<boolean>((resolve) => {
      const granted = () => {
        signal?.removeEventListener("abort", giveUp);
        resolve(true);
      };
      const giveUp = () => {
        this.#waiters.splice(this.#waiters.indexOf(granted), 1);
        resolve(false);
      };
      this.#waiters.push(granted);
      signal?.addEventListener("abort", giveUp, { once: true });
    });
  }

  /** Gives a slot back, straight to the longest waiter if there is one. */
  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#open--;
  }
}

/**
 * A listener's own cap inside the server's: a slot of its own first, then a
 * shared one.
 *
 * @example
 * ```ts
 * import { ConnectionCap, NestedCap } from "./cap.ts";
 * const server = new ConnectionCap(100);
 * const listener = new NestedCap(new ConnectionCap(10), server);
 * if (await listener.reserve()) listener.release();
 * ```
 */
export class NestedCap extends ConnectionCap {
  readonly #inner: ConnectionCap;
  readonly #outer: ConnectionCap;
  /** Holds a slot of `inner`, then one of `outer`. */
  constructor(inner: ConnectionCap, outer: ConnectionCap) {
    super(inner.max);
    this.#inner = inner;
    this.#outer = outer;
  }
  /** Slots in use of its own. */
  override get open(): number {
    return this.#inner.open;
  }
  /** Waits for a slot of its own, then one of the outer cap. */
  override async reserve(signal?: AbortSignal): Promise<boolean> {
    if (!(await this.#inner.reserve(signal))) return false;
    if (await this.#outer.reserve(signal)) return true;
    this.#inner.release();
    return false;
  }
  /** Gives both slots back. */
  override release(): void {
    this.#outer.release();
    this.#inner.release();
  }
}
