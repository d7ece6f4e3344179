/**
 * How an address is written everywhere: logs, the Serving lines, the status
 * report.
 *
 * @module
 */

/**
 * `host:port`, with IPv6 hosts in brackets.
 *
 * @example
 * ```ts
 * import { formatAddress } from "./address.ts";
 * formatAddress({ transport: "tcp", hostname: "::1", port: 10001 }); // "[::1]:10001"
 * ```
 */
export function formatAddress(addr: Deno.NetAddr): string {
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return `${host}:${addr.port}`;
}
