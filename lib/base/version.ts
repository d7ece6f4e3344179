/**
 * The program's version, read from deno.json so that the release tag,
 * the package metadata and `--version` cannot disagree.
 *
 * @module
 */

import meta from "../../deno.json" with { type: "json" };

/**
 * The version, e.g. `0.1.0`.
 *
 * @example
 * ```ts
 * import { VERSION } from "./version.ts";
 * console.log(`poetry ${VERSION}`);
 * ```
 */
export const VERSION: string = meta.version;
