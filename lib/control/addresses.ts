/**
 * Addresses the control endpoint checks: its peers (loopback only, unless
 * told otherwise) and where a proxy may listen.
 *
 * @module
 */

import { ApiError } from "./api_error.ts";

/**
 * Where a proxy asks to listen: `HOST:PORT`, `[IPV6]:PORT`, or `:PORT` for
 * `iface`. HOST must be a loopback address, `localhost` or `iface`: an API
 * client on this machine does not open listeners to the network.
 *
 * @example
 * ```ts
 * import { parseListen } from "./addresses.ts";
 * parseListen(":8000", "localhost"); // { hostname: "localhost", port: 8000 }
 * ```
 * @throws {ApiError} 400 for anything else.
 */
export function parseListen(listen: string, iface: string): { hostname: string; port: number } {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]\s]*)):(\d{1,5})$/.exec(listen);
  const port = Number(match?.[3]);
  if (!match || port > 65535) {
    throw ApiError.badBody(`listen must be HOST:PORT, got '${listen}'`);
  }
  const hostname = match[1] ?? match[2];
  if (hostname === "") return { hostname: iface, port };
  if (hostname !== iface && hostname !== "localhost" && !isLoopback(hostname)) {
    throw new ApiError(
      `listen on ${hostname} is not allowed: a proxy listens on a loopback address or on --iface (${iface})`,
      400,
    );
  }
  return { hostname, port };
}

/**
 * Whether an address is this machine's own loopback: 127.0.0.0/8, `::1`, or
 * 127.x written as an IPv4-mapped IPv6 address.
 *
 * @example
 * ```ts
 * import { isLoopback } from "./addresses.ts";
 * isLoopback("127.0.0.2"); // true
 * isLoopback("192.0.2.1"); // false
 * ```
 */
export function isLoopback(hostname: string): boolean {
  const host = hostname.toLowerCase();
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || host === "::1" ||
    /^::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) ||
    host === "0:0:0:0:0:0:0:1";
}
