/**
 * A poetry client, like the tutorial's get-poetry: fetches one poem from a
 * server and reports its progress. The command line that fetches several at
 * once (`deno task get`) is cli/get.ts.
 *
 * @module
 */

/**
 * Where a poem is served.
 *
 * @example
 * ```ts
 * import type { PoemAddress } from "./client.ts";
 * const address: PoemAddress = { hostname: "127.0.0.1", port: 10000 };
 * ```
 */
export interface PoemAddress {
  /** Host name or IP address. */
  hostname: string;
  /** TCP port. */
  port: number;
}

/**
 * Parses `PORT`, `HOST:PORT` or `[IPV6]:PORT`; the host defaults to localhost.
 *
 * @example
 * ```ts
 * import { parseAddress } from "./client.ts";
 * parseAddress("[::1]:10001"); // { hostname: "::1", port: 10001 }
 * parseAddress("10000"); // { hostname: "localhost", port: 10000 }
 * ```
 * @throws {TypeError} for anything else.
 */
export function parseAddress(text: string): PoemAddress {
  const match = /^(?:\[([^\]\s]+)\]:|([^:\s]+):)?(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port < 1 || port > 65535) {
    throw new TypeError(`not an address: '${text}' (use PORT, HOST:PORT or [IPV6]:PORT)`);
  }
  return { hostname: match[1] ?? match[2] ?? "localhost", port };
}

/**
 * Connects, reads to the end, and returns every byte the server sent.
 * `onChunk`, if given, is called with the size of each chunk as it arrives.
 *
 * @example
 * ```ts
 * import { fetchPoem } from "./client.ts";
 * const bytes = await fetchPoem({ hostname: "127.0.0.1", port: 10000 }, (n) => console.log(n));
 * console.log(new TextDecoder().decode(bytes));
 * ```
 */
export async function fetchPoem(
  address: PoemAddress,
  onChunk?: (bytes: number) => void,
): Promise<Uint8Array> {
  const conn = await Deno.connect({ ...address, transport: "tcp" });
  if (!onChunk) return new Uint8Array(await new Response(conn.readable).arrayBuffer());
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of conn.readable) {
    parts.push(chunk);
    total += chunk.length;
    onChunk(chunk.length);
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return bytes;
}
