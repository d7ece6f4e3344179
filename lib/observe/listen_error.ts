/**
 * Why an HTTP endpoint (the admin or the control endpoint) could not
 * listen, as one line and a hint: the one explanation both share, each with
 * its own words for what to do.
 *
 * @module
 */

import { formatAddress } from "../base/address.ts";
import { StartupError, UsageError } from "../base/errors.ts";

/**
 * What to tell the operator for each way a listen fails.
 *
 * @example
 * ```ts
 * import type { ListenHints } from "./listen_error.ts";
 * const hints: ListenHints = {
 *   inUse: "choose another port for --admin",
 *   notAvailable: "use one of this machine's addresses, e.g. --admin 127.0.0.1:9100",
 *   allowNet: "127.0.0.1",
 * };
 * ```
 */
export interface ListenHints {
  /** The hint when the address is in use. */
  inUse: string;
  /** The hint when the address is not this machine's. */
  notAvailable: string;
  /** The hosts an `--allow-net=` that covers the endpoint would name. */
  allowNet: string;
}

/**
 * The error to throw for `err`, a failed listen of the `what` endpoint
 * ("admin", "control") on `hostname:port`.
 *
 * @example
 * ```ts
 * import { explainListenError } from "./listen_error.ts";
 * const err = explainListenError(new Deno.errors.AddrInUse("in use"), "admin", {
 *   hostname: "127.0.0.1",
 *   port: 9100,
 * }, { inUse: "choose another port for --admin", notAvailable: "", allowNet: "127.0.0.1" });
 * console.log(err.message); // cannot serve the admin endpoint: 127.0.0.1:9100 is already in use
 * ```
 */
export function explainListenError(
  err: unknown,
  what: string,
  { hostname, port }: { hostname: string; port: number },
  hints: ListenHints,
): Error {
  const where = formatAddress({ transport: "tcp", hostname, port });
  if (err instanceof Deno.errors.AddrInUse) {
    return new StartupError(
      `cannot serve the ${what} endpoint: ${where} is already in use`,
      hints.inUse,
    );
  }
  if (err instanceof Deno.errors.AddrNotAvailable) {
    return new StartupError(
      `cannot serve the ${what} endpoint on ${hostname}: not an address of this machine`,
      hints.notAvailable,
    );
  }
  if (err instanceof Deno.errors.NotCapable) {
    return new UsageError(
      `no permission to listen on ${where} for the ${what} endpoint`,
      `run again with --allow-net covering it, e.g. --allow-net=${hints.allowNet}`,
    );
  }
  const message = err instanceof Error ? err.message : String(err);
  return new StartupError(`cannot serve the ${what} endpoint on ${where}: ${message}`);
}
