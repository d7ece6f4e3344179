/**
 * "Did you mean --port?": the known option closest to a mistyped one, for
 * the server's and the client's command lines.
 *
 * @module
 */

/**
 * The one candidate `word` is most likely a typo of: the closest by edit
 * distance (a swap of two neighbouring letters counts as one edit), when at
 * most one edit in four letters away, or the only one that starts with it.
 * Nothing when no candidate is that close, or two are equally close.
 *
 * @example
 * ```ts
 * import { closest } from "./suggest.ts";
 * console.log(closest("--prot", ["--port", "--iface"])); // "--port"
 * console.log(closest("--zzz", ["--port", "--iface"])); // undefined
 * ```
 */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const bare = (name: string) => name.replace(/^-+/, "");
  const typed = bare(word);
  if (typed.length < 2) return undefined;
  const allowed = Math.max(1, Math.floor(typed.length / 4));
  let best: string | undefined;
  let bestDistance = Infinity;
  let tied = false;
  for (const candidate of candidates) {
    const distance = editDistance(typed, bare(candidate));
    if (distance < bestDistance) [best, bestDistance, tied] = [candidate, distance, false];
    else if (distance === bestDistance) tied = true;
  }
  if (best !== undefined && bestDistance <= allowed && !tied) return best;
  // A prefix of one option only: --stats for --stats-interval.
  const starting = candidates.filter((c) => typed.length >= 3 && bare(c).startsWith(typed));
  return starting.length === 1 ? starting[0] : undefined;
}

/** Optimal string alignment distance: insertions, deletions, changes, neighbour swaps. */
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) rows[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      rows[i][j] = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        rows[i][j] = Math.min(rows[i][j], rows[i - 2][j - 2] + 1);
      }
    }
  }
  return rows[a.length][b.length];
}
