/**
 * Reading an HTTP/1.1 request for lib/observe/http_server.ts: the bytes of
 * a connection bounded in time and size, and a strict parser of the request
 * head (RFC 9112). Anything unusual is a {@linkcode BadRequest}.
 *
 * @module
 */

/** A request that gets an error answer and the end of its connection. */
export class BadRequest extends Error {
  /** The status to answer with, and why. */
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** The connection ended or timed out while a request was read. */
export class Gone extends Error {}

/**
 * Bytes read from a connection and not yet consumed, with reads bounded in
 * time: the connection is closed when a deadline passes.
 */
export class ConnInput {
  timedOut = false;
  #buf = new Uint8Array(4096);
  #start = 0;
  #end = 0;

  constructor(readonly conn: Deno.Conn) {}

  get buffered(): number {
    return this.#end - this.#start;
  }

  /** Reads once more; false at the end of the stream or when `ms` pass first. */
  async fill(ms: number): Promise<boolean> {
    if (this.#start > 0 && this.#start === this.#end) this.#start = this.#end = 0;
    if (this.#end === this.#buf.length) {
      const grown = new Uint8Array(this.#buf.length * 2);
      grown.set(this.#buf.subarray(this.#start, this.#end));
      this.#end -= this.#start;
      this.#start = 0;
      this.#buf = grown;
    }
    const timer = setTimeout(() => {
      this.timedOut = true;
      closeQuietly(this.conn);
    }, ms);
    try {
      const n = await this.conn.read(this.#buf.subarray(this.#end));
      if (n === null) return false;
      this.#end += n;
      return true;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Reads until `marker` is buffered, within `max` bytes and `ms`; returns the end of the marker. */
  async until(marker: number[], max: number, ms: number): Promise<number> {
    const deadline = performance.now() + ms;
    for (let searched = this.#start;;) {
      const found = indexOf(this.#buf, marker, Math.max(searched, this.#start), this.#end);
      if (found >= 0 && found + marker.length - this.#start <= max) {
        return found + marker.length - this.#start;
      }
      if (this.buffered >= max) throw new BadRequest(431, `a request head of at most ${max} bytes`);
      searched = Math.max(this.#start, this.#end - marker.length + 1);
      if (!(await this.fill(Math.max(0, deadline - performance.now())))) throw new Gone();
    }
  }

  /** Reads `length` bytes within `ms` and consumes them. */
  async exactly(length: number, ms: number): Promise<Uint8Array<ArrayBuffer>> {
    const deadline = performance.now() + ms;
    while (this.buffered < length) {
      if (!(await this.fill(Math.max(0, deadline - performance.now())))) throw new Gone();
    }
    return this.take(length).slice();
  }

  /** Consumes `length` buffered bytes. */
  take(length: number): Uint8Array {
    const bytes = this.#buf.subarray(this.#start, this.#start + length);
    this.#start += length;
    return bytes;
  }
}

function indexOf(buf: Uint8Array, marker: number[], from: number, to: number): number {
  outer: for (let i = from; i + marker.length <= to; i++) {
    for (let j = 0; j < marker.length; j++) if (buf[i + j] !== marker[j]) continue outer;
    return i;
  }
  return -1;
}

/** A parsed request head. */
export interface Head {
  method: string;
  target: string;
  version: "1.0" | "1.1";
  headers: Headers;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Visible ASCII, space and tab; RFC 9110 allows obs-text too, which no
// client of this endpoint needs.
const FIELD_VALUE = /^[\t\x20-\x7e]*$/;

/** Parses a request head (RFC 9112), strictly: anything unusual is a 400. */
export function parseHead(bytes: Uint8Array): Head {
  // latin1: every byte maps to one character, so nothing is hidden by decoding.
  const text = new TextDecoder("latin1").decode(bytes);
  const lines = text.slice(0, -4).split("\r\n");
  const parts = lines[0].split(" ");
  if (parts.length !== 3 || !TOKEN.test(parts[0])) {
    throw new BadRequest(400, "malformed request line");
  }
  const [method, target, protocol] = parts;
  const version = /^HTTP\/1\.([01])$/.exec(protocol)?.[1];
  if (version === undefined) {
    if (/^HTTP\/\d(\.\d)?$/.test(protocol)) throw new BadRequest(505, "HTTP/1.1 only");
    throw new BadRequest(400, "malformed request line");
  }
  if (!target.startsWith("/") || !/^[\x21-\x7e]+$/.test(target)) {
    throw new BadRequest(400, "the request target must be a path");
  }
  const headers = new Headers();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    if (colon <= 0 || !TOKEN.test(name) || !FIELD_VALUE.test(value)) {
      throw new BadRequest(400, "malformed header line");
    }
    const lower = name.toLowerCase();
    if ((lower === "host" || lower === "content-length") && headers.has(lower)) {
      throw new BadRequest(400, `more than one ${name} header`);
    }
    headers.append(name, value);
  }
  return { method, target, version: version === "1" ? "1.1" : "1.0", headers };
}

/** The body's length from Content-Length; chunked bodies are refused. */
export function bodyLength(headers: Headers): number {
  if (headers.has("transfer-encoding")) {
    throw new BadRequest(501, "chunked request bodies are not supported; send Content-Length");
  }
  const length = headers.get("content-length");
  if (length === null) return 0;
  if (!/^\d{1,15}$/.test(length)) throw new BadRequest(400, "malformed Content-Length");
  return Number(length);
}

/**
 * `Host`'s name and whether it is an IP literal, or undefined when it is
 * malformed: a reg-name, an IPv4 address or a bracketed IPv6 one, and an
 * optional port from 0 to 65535.
 */
export function parseHost(host: string): { name: string; literal: boolean } | undefined {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_~]+)(?::(\d{1,5}))?$/.exec(host);
  if (!match || (match[2] !== undefined && Number(match[2]) > 65535)) return undefined;
  const name = match[1];
  if (name.startsWith("[")) {
    // URL is the judge of what is a valid IPv6 address.
    return URL.canParse(`http://${name}/`) ? { name, literal: true } : undefined;
  }
  if (!URL.canParse(`http://${name}/`)) return undefined;
  return { name, literal: /^\d{1,3}(\.\d{1,3}){3}$/.test(name) };
}

/** A name as compared: lower case, without a trailing dot. */
export function normalName(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}

function closeQuietly(closer: { close(): void }): void {
  try {
    closer.close();
  } catch {
    // Closed already.
  }
}
