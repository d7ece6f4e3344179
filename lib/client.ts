/**
 * A poetry client, like the tutorial's get-poetry: fetches poems from several
 * servers at once. As a program (`deno task get [HOST:]PORT ...`) it prints
 * the poems to stdout and, to stderr, one line per poem and the total time.
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
 *
 * @example
 * ```ts
 * import { fetchPoem } from "./client.ts";
 * const bytes = await fetchPoem({ hostname: "127.0.0.1", port: 10000 });
 * console.log(new TextDecoder().decode(bytes));
 * ```
 */
export async function fetchPoem(address: PoemAddress): Promise<Uint8Array> {
  const conn = await Deno.connect({ ...address, transport: "tcp" });
  return new Uint8Array(await new Response(conn.readable).arrayBuffer());
}

async function main(args: string[]): Promise<number> {
  if (args.length === 0 || args.includes("--help") || args.includes("-h")) {
    console.error("usage: deno task get [HOST:]PORT ...   e.g. deno task get 10000 10001");
    return args.length === 0 ? 2 : 0;
  }
  let addresses: PoemAddress[];
  try {
    addresses = args.map(parseAddress);
  } catch (err) {
    console.error(`error: ${(err as Error).message}`);
    return 2;
  }
  const started = performance.now();
  const results = await Promise.all(addresses.map(async (address, i) => {
    const where = `${
      address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname
    }:${address.port}`;
    const taskStarted = performance.now();
    try {
      const bytes = await fetchPoem(address);
      const seconds = ((performance.now() - taskStarted) / 1000).toFixed(2);
      console.error(
        `Task ${i + 1}: got ${bytes.length} bytes of poetry from ${where} in ${seconds}s`,
      );
      return bytes;
    } catch (err) {
      console.error(`Task ${i + 1}: failed to get poetry from ${where}: ${(err as Error).message}`);
      return undefined;
    }
  }));
  for (const bytes of results) if (bytes) await writeAll(bytes);
  const got = results.filter((bytes) => bytes !== undefined).length;
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  console.error(`Got ${got} of ${results.length} poems in ${seconds}s`);
  return got === results.length ? 0 : 1;
}

async function writeAll(bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await Deno.stdout.write(bytes.subarray(at));
}

if (import.meta.main) Deno.exit(await main(Deno.args));
