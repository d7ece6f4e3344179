/**
 * Re-reading poems and saying what came of each re-read, once however many
 * callers (signals, `--watch`) shared it.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Poem } from "../core/poem.ts";

const log = getLogger(["poetry", "server"]);

/**
 * A server's poem re-reads: their outcomes logged and counted.
 *
 * @example
 * ```ts
 * import { Poem } from "../core/poem.ts";
 * import { PoemRereads } from "./reload.ts";
 * const rereads = new PoemRereads();
 * console.log(await rereads.reread(await Poem.load("poems/a-short-one.txt"), "info")); // "unchanged"
 * ```
 */
export class PoemRereads {
  /** Re-reads so far, by result. */
  readonly counts: Record<"changed" | "unchanged" | "failed", number> = {
    changed: 0,
    unchanged: 0,
    failed: 0,
  };
  // Poem.reload coalesces: calls made during a re-read share one promise for
  // the next. Only the first holder of a promise logs its outcome, so a burst
  // of SIGHUPs logs once per re-read, not once per signal.
  readonly #reported = new WeakSet<Promise<boolean>>();
  /** Poems whose last re-read failed: the next that works says they recovered. */
  readonly #unreadable = new WeakSet<Poem>();

  /**
   * Re-reads `poem` and logs the outcome; an unchanged poem at
   * `unchangedLevel` (debug when the caller's own record counts it). A poem
   * readable again after a failure says it recovered.
   */
  async reread(
    poem: Poem,
    unchangedLevel: "debug" | "info",
  ): Promise<"changed" | "unchanged" | "failed"> {
    const reading = poem.reload();
    const first = !this.#reported.has(reading);
    this.#reported.add(reading);
    try {
      const changed = await reading;
      const recovered = this.#unreadable.has(poem);
      this.#unreadable.delete(poem);
      const outcome = changed ? "changed" : "unchanged";
      if (!first) return outcome;
      this.counts[outcome]++;
      const fields = { poem: poem.path, size: poem.content.size };
      if (recovered) log.info("Recovered {poem}: readable again, {size} bytes.", fields);
      else if (changed) log.info("Reloaded {poem}: now {size} bytes.", fields);
      else if (unchangedLevel === "info") {
        log.info("Re-read {poem} after a change to its file: the same bytes, nothing to reload.", {
          poem: poem.path,
        });
      } else log.debug("Re-read {poem}: unchanged.", { poem: poem.path });
      return outcome;
    } catch (err) {
      this.#unreadable.add(poem);
      if (first) {
        log.error("Could not reload {poem}, keeping the old version: {error}", {
          poem: poem.path,
          error: err instanceof Error ? err.message : String(err),
        });
        this.counts.failed++;
      }
      return "failed";
    }
  }
}
