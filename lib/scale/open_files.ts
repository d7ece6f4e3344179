/**
 * How many more files this process may open, found by trying: Deno has no
 * `getrlimit`, and it lets a program read `/proc/self/limits` and
 * `/proc/self/fd` only under `--allow-all` (Deno 2.9.6: "Requires all
 * access"), not under the `--allow-read` the server runs with.
 *
 * @module
 */

/**
 * Opens `path` up to `wanted` times at once, closes every handle, and
 * returns how many opened before the open-file limit stopped it: `wanted`
 * when there is room for them all. `undefined` when it cannot tell (the
 * file cannot be opened even once, e.g. no permission to read it).
 *
 * Under the limit, other threads of the process cannot open a file either,
 * for as long as the handles are held: call it before they need to.
 *
 * @example
 * ```ts
 * import { roomForFiles } from "./open_files.ts";
 * const room = roomForFiles(10, new URL(import.meta.url));
 * console.log(room === undefined || room <= 10); // true
 * ```
 */
export function roomForFiles(wanted: number, path: string | URL): number | undefined {
  const held: Deno.FsFile[] = [];
  try {
    while (held.length < wanted) held.push(Deno.openSync(path));
    return held.length;
  } catch (err) {
    // EMFILE has no class of its own in Deno: a plain Error, "os error 24".
    return /os error 24|too many open files/i.test(String(err)) ? held.length : undefined;
  } finally {
    for (const file of held) file.close();
  }
}
