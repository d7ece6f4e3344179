/**
 * The PROXY protocol (versions 1 and 2, as HAProxy's `proxy-protocol.txt`
 * defines them): a load balancer in TCP mode starts every connection with a
 * header that names the original client, so the server can use the client's
 * address rather than the balancer's for `--allow`/`--deny` and the logs.
 *
 * The parser is strict: anything the spec does not allow is refused, as
 * early as the bytes show it (a first byte that starts neither header is
 * refused at once). It is our own, small and fuzzed (tests/proxy_test.ts):
 * the npm parser looked at, proxy-protocol-js 4.0.6, takes any text without
 * spaces for an address and any digits for a port (`PROXY TCP4 nope
 * 127.0.0.999 0999 99999` parses), which would let garbage through.
 *
 * @module
 */

/**
 * How long a client may take to send its whole header. The spec asks for at
 * least 3 s ("to cover a TCP retransmit"); a load balancer sends the header
 * in its first segment, so only a broken or hostile peer is ever this slow,
 * and until then it holds a slot at the connection cap.
 *
 * @example
 * ```ts
 * import { PROXY_HEADER_TIMEOUT_MS } from "./proxy.ts";
 * console.log(PROXY_HEADER_TIMEOUT_MS); // 3000
 * ```
 */
export const PROXY_HEADER_TIMEOUT_MS = 3000;

/**
 * The longest header accepted, in bytes. A v1 line is at most 107 bytes; a
 * v2 header is 16 bytes, an address block of at most 216 (AF_UNIX), and TLVs
 * (SSL details, a unique id of up to 128 bytes, ...): 1 KiB holds what real
 * balancers send and bounds what a hostile peer can make us buffer.
 *
 * @example
 * ```ts
 * import { MAX_PROXY_HEADER_BYTES } from "./proxy.ts";
 * console.log(MAX_PROXY_HEADER_BYTES); // 1024
 * ```
 */
export const MAX_PROXY_HEADER_BYTES = 1024;

/** A v1 line may not be longer than this, CRLF included (the spec's worst case). */
const MAX_V1_LINE = 107;

/**
 * A parsed PROXY header.
 *
 * `command` is `"proxy"` when the header names the original endpoints
 * (`source` is the client); `"local"` for a v2 LOCAL connection (the
 * balancer's own health check) and `"unknown"` for v1 `UNKNOWN`, v2
 * `AF_UNSPEC`, or a v2 family this TCP server does not serve (AF_UNIX, UDP):
 * then there is no `source`, and the connection's own peer is the client, as
 * the spec says.
 *
 * @example
 * ```ts
 * import { parseProxyHeader, type ProxyHeader } from "./proxy.ts";
 * const line = new TextEncoder().encode("PROXY TCP4 127.0.0.9 127.0.0.1 40000 10000\r\n");
 * const header: ProxyHeader | null = parseProxyHeader(line);
 * console.log(header?.source?.hostname); // "127.0.0.9"
 * ```
 */
export interface ProxyHeader {
  /** 1 for the text line, 2 for the binary header. */
  version: 1 | 2;
  /** Whether the header names the original endpoints. */
  command: "proxy" | "local" | "unknown";
  /** The original client, when `command` is `"proxy"`. */
  source?: Deno.NetAddr;
  /** The address the client connected to, when `command` is `"proxy"`. */
  destination?: Deno.NetAddr;
  /** Bytes the header took; whatever follows is the client's own. */
  length: number;
}

/**
 * A PROXY header that is malformed, missing, too long or too slow. The
 * connection must be closed without a byte.
 *
 * @example
 * ```ts
 * import { parseProxyHeader, ProxyHeaderError } from "./proxy.ts";
 * try {
 *   parseProxyHeader(new TextEncoder().encode("GET / HTTP/1.0\r\n"));
 * } catch (err) {
 *   console.log(err instanceof ProxyHeaderError); // true
 * }
 * ```
 */
export class ProxyHeaderError extends Error {
  /** An error saying what is wrong with the header. */
  constructor(message: string) {
    super(message);
    this.name = "ProxyHeaderError";
  }
}

const V1_PREFIX = [0x50, 0x52, 0x4f, 0x58, 0x59, 0x20]; // "PROXY "
const V2_SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const CR = 0x0d;
const LF = 0x0a;

/**
 * Parses the PROXY header at the start of `bytes`.
 *
 * @returns the header, or `null` when `bytes` is a valid beginning that needs
 * more bytes.
 * @throws {ProxyHeaderError} as soon as the bytes cannot begin a valid header.
 *
 * @example
 * ```ts
 * import { parseProxyHeader } from "./proxy.ts";
 * const bytes = new TextEncoder().encode("PROXY TCP6 ::1 ::1 40000 10000\r\nhello");
 * const header = parseProxyHeader(bytes);
 * console.log(header?.length); // 32: "hello" is the client's
 * parseProxyHeader(bytes.subarray(0, 10)); // null: more bytes needed
 * ```
 */
export function parseProxyHeader(bytes: Uint8Array): ProxyHeader | null {
  if (bytes.length === 0) return null;
  if (bytes[0] === V1_PREFIX[0]) return parseV1(bytes);
  if (bytes[0] === V2_SIGNATURE[0]) return parseV2(bytes);
  throw new ProxyHeaderError("not a PROXY header");
}

function parseV1(bytes: Uint8Array): ProxyHeader | null {
  const prefixed = Math.min(bytes.length, V1_PREFIX.length);
  for (let i = 0; i < prefixed; i++) {
    if (bytes[i] !== V1_PREFIX[i]) throw new ProxyHeaderError("not a PROXY header");
  }
  // The spec: a single CR or LF never ends the line, and no CRLF within the
  // first 107 bytes makes the line invalid.
  let end = -1;
  for (let i = 0; i < Math.min(bytes.length, MAX_V1_LINE); i++) {
    if (bytes[i] === LF) throw new ProxyHeaderError("a bare LF in the PROXY line");
    if (bytes[i] === CR) {
      if (i + 1 === bytes.length) break;
      if (bytes[i + 1] !== LF) throw new ProxyHeaderError("a bare CR in the PROXY line");
      end = i;
      break;
    }
  }
  if (end < 0) {
    if (bytes.length >= MAX_V1_LINE) {
      throw new ProxyHeaderError(`no CRLF in the first ${MAX_V1_LINE} bytes of the PROXY line`);
    }
    checkV1Protocol(bytes.subarray(V1_PREFIX.length), false);
    return null;
  }
  const line = String.fromCharCode(...bytes.subarray(0, end));
  const length = end + 2;
  const fields = line.split(" ");
  checkV1Protocol(bytes.subarray(V1_PREFIX.length, end), true);
  if (fields[1] === "UNKNOWN") {
    // "The receiver must ignore anything presented before the CRLF."
    return { version: 1, command: "unknown", length };
  }
  if (fields.length !== 6) throw new ProxyHeaderError("a PROXY line needs exactly six fields");
  const [, protocol, sourceText, destinationText, sourcePort, destinationPort] = fields;
  const parse = protocol === "TCP4" ? parseIpv4 : parseIpv6;
  const source = parse(sourceText);
  const destination = parse(destinationText);
  if (source === undefined || destination === undefined) {
    throw new ProxyHeaderError(`not a canonical ${protocol} address in the PROXY line`);
  }
  return {
    version: 1,
    command: "proxy",
    source: { transport: "tcp", hostname: source, port: v1Port(sourcePort) },
    destination: { transport: "tcp", hostname: destination, port: v1Port(destinationPort) },
    length,
  };
}

const V1_PROTOCOLS = ["TCP4 ", "TCP6 ", "UNKNOWN"];

/** The protocol word after "PROXY ", or as much of it as has arrived. */
function checkV1Protocol(rest: Uint8Array, complete: boolean): void {
  const seen = String.fromCharCode(...rest.subarray(0, 7));
  const fits = V1_PROTOCOLS.some((word) =>
    complete || seen.length >= word.length ? seen.startsWith(word) : word.startsWith(seen)
  );
  // "UNKNOWN" is followed by CRLF or by a space and text to ignore.
  const unknownTail = seen === "UNKNOWN" && rest.length > 7 && rest[7] !== 0x20 &&
    rest[7] !== CR;
  if (!fits || unknownTail) {
    throw new ProxyHeaderError("the PROXY line names neither TCP4, TCP6 nor UNKNOWN");
  }
}

/** A decimal port, 0 to 65535, without heading zeroes. */
function v1Port(text: string): number {
  if (!/^(0|[1-9]\d{0,4})$/.test(text) || Number(text) > 65535) {
    throw new ProxyHeaderError("not a port number in the PROXY line");
  }
  return Number(text);
}

/** Four decimal bytes without heading zeroes, as the spec demands; or undefined. */
function parseIpv4(text: string): string | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  for (const part of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(part) || Number(part) > 255) return undefined;
  }
  return text;
}

/**
 * An IPv6 address as inet_pton reads it (groups of 1 to 4 hex digits, one
 * `::` at most, an IPv4 tail), without a zone id; written back canonically.
 */
function parseIpv6(text: string): string | undefined {
  let head = text;
  const tail: number[] = [];
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const ipv4 = parseIpv4(dotted[2]);
    if (ipv4 === undefined) return undefined;
    const b = ipv4.split(".").map(Number);
    tail.push(b[0] << 8 | b[1], b[2] << 8 | b[3]);
    // Keep a "::" that ends right before the IPv4 tail.
    head = dotted[1].endsWith("::") ? dotted[1] : dotted[1].slice(0, -1);
  }
  const halves = head.split("::");
  if (halves.length > 2) return undefined;
  const groups = (half: string) => half === "" ? [] : half.split(":");
  const left = groups(halves[0]);
  const right = halves.length === 2 ? groups(halves[1]) : [];
  for (const group of [...left, ...right]) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return undefined;
  }
  const given = left.length + right.length + tail.length;
  if (halves.length === 1 ? given !== 8 : given > 7) return undefined;
  const words = [
    ...left.map((g) => parseInt(g, 16)),
    ...new Array(8 - given).fill(0),
    ...right.map((g) => parseInt(g, 16)),
    ...tail,
  ];
  return formatIpv6(words);
}

/** RFC 5952 text for eight 16-bit words, as Deno prints peers. */
function formatIpv6(words: number[]): string {
  // IPv4-mapped addresses keep their dotted tail, as Deno shows them.
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) {
    return `::ffff:${words[6] >> 8}.${words[6] & 0xff}.${words[7] >> 8}.${words[7] & 0xff}`;
  }
  let best = -1, bestLength = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) [best, bestLength] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = words.map((w) => w.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLength).join(":")}`;
}

/** Address block sizes by the v2 family nibble: AF_INET, AF_INET6, AF_UNIX. */
const V2_ADDRESS_BYTES: Record<number, number> = { 1: 12, 2: 36, 3: 216 };
/** The family and protocol bytes the spec lists; no other may be accepted. */
const V2_FAMILIES = new Set([0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32]);

function parseV2(bytes: Uint8Array): ProxyHeader | null {
  const signed = Math.min(bytes.length, V2_SIGNATURE.length);
  for (let i = 0; i < signed; i++) {
    if (bytes[i] !== V2_SIGNATURE[i]) throw new ProxyHeaderError("not a PROXY header");
  }
  if (bytes.length > 12) {
    if (bytes[12] >> 4 !== 2) throw new ProxyHeaderError("PROXY header version is not 2");
    if ((bytes[12] & 0x0f) > 1) {
      throw new ProxyHeaderError("PROXY header command is not LOCAL or PROXY");
    }
  }
  const local = bytes.length > 12 && (bytes[12] & 0x0f) === 0;
  // A LOCAL connection's family "is ignored"; any other must be one the spec lists.
  if (bytes.length > 13 && !local && !V2_FAMILIES.has(bytes[13])) {
    throw new ProxyHeaderError(`PROXY header family and protocol 0x${bytes[13].toString(16)}`);
  }
  if (bytes.length < 16) return null;
  const length = 16 + (bytes[14] << 8 | bytes[15]);
  if (length > MAX_PROXY_HEADER_BYTES) {
    throw new ProxyHeaderError(`PROXY header of ${length} bytes, over ${MAX_PROXY_HEADER_BYTES}`);
  }
  const family = bytes[13] >> 4;
  const addressBytes = local ? 0 : V2_ADDRESS_BYTES[family] ?? 0;
  if (length < 16 + addressBytes) {
    throw new ProxyHeaderError("PROXY header too short for its address family");
  }
  if (bytes.length < length) return null;
  // LOCAL: "discard the protocol block including the family"; AF_UNSPEC:
  // "ignore address information", whose size is then unknown.
  if (local) return { version: 2, command: "local", length };
  if (family !== 0) checkTlvs(bytes.subarray(16 + addressBytes, length));
  // Only TCP over IPv4 or IPv6 names a client this server can use; for the
  // other listed families the spec says to fall back to the real endpoints.
  if (bytes[13] !== 0x11 && bytes[13] !== 0x21) return { version: 2, command: "unknown", length };
  const block = bytes.subarray(16, 16 + addressBytes);
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const size = family === 1 ? 4 : 16;
  const address = (at: number) =>
    family === 1 ? [...block.subarray(at, at + 4)].join(".") : formatIpv6(
      Array.from({ length: 8 }, (_, i) => view.getUint16(at + 2 * i)),
    );
  return {
    version: 2,
    command: "proxy",
    source: { transport: "tcp", hostname: address(0), port: view.getUint16(2 * size) },
    destination: { transport: "tcp", hostname: address(size), port: view.getUint16(2 * size + 2) },
    length,
  };
}

/** TLVs are skipped, but they must tile the rest of the header exactly. */
function checkTlvs(tlvs: Uint8Array): void {
  let at = 0;
  while (at < tlvs.length) {
    if (at + 3 > tlvs.length) throw new ProxyHeaderError("a truncated TLV in the PROXY header");
    at += 3 + (tlvs[at + 1] << 8 | tlvs[at + 2]);
    if (at > tlvs.length) throw new ProxyHeaderError("a TLV longer than the PROXY header");
  }
}

/**
 * Reads the PROXY header at the start of a connection. Bytes read past the
 * header are the client's; this protocol never reads them, so they are
 * dropped.
 *
 * @throws {ProxyHeaderError} when the header is malformed, too long, ends
 * early, or has not all arrived within `timeoutMs` (then the connection is
 * closed here, the only way to end the pending read). Other errors (the
 * connection closed by someone else meanwhile) are passed on.
 *
 * @example
 * ```ts
 * import { readProxyHeader } from "./proxy.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port });
 * await client.write(new TextEncoder().encode("PROXY TCP4 127.0.0.9 127.0.0.1 40000 10000\r\n"));
 * const conn = await listener.accept();
 * const header = await readProxyHeader(conn);
 * console.log(header.source?.hostname); // "127.0.0.9"
 * ```
 */
export async function readProxyHeader(
  conn: Pick<Deno.Conn, "read" | "close">,
  options: { timeoutMs?: number } = {},
): Promise<ProxyHeader> {
  const timeoutMs = options.timeoutMs ?? PROXY_HEADER_TIMEOUT_MS;
  const buffer = new Uint8Array(MAX_PROXY_HEADER_BYTES);
  let filled = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<"expired">((resolve) => {
    timer = setTimeout(() => resolve("expired"), timeoutMs);
  });
  try {
    while (true) {
      const reading = conn.read(buffer.subarray(filled));
      const n = await Promise.race([reading, expired]);
      if (n === "expired") {
        try {
          conn.close();
        } catch {
          // Closed already.
        }
        await reading.catch(() => {});
        throw new ProxyHeaderError(
          `no complete PROXY header within ${timeoutMs / 1000} s (got ${filled} bytes)`,
        );
      }
      if (n === null) {
        throw new ProxyHeaderError(
          filled === 0
            ? "closed without a PROXY header"
            : `closed after ${filled} bytes of a PROXY header`,
        );
      }
      filled += n;
      const header = parseProxyHeader(buffer.subarray(0, filled));
      if (header) return header;
      if (filled === buffer.length) {
        throw new ProxyHeaderError(`no PROXY header in ${filled} bytes`);
      }
    }
  } catch (err) {
    if (err instanceof Deno.errors.ConnectionReset) {
      throw new ProxyHeaderError(`reset after ${filled} bytes of a PROXY header`);
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
