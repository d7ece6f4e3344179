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
 * time: when a deadline passes, `onTimeout` is told what the read was waiting
 * for, and must end the connection (which ends the read).
 */
export class ConnInput {
  /** What the read that ran out of time was waiting for; undefined while none did. */
  timedOut?: ReadPhase;
  #phase: ReadPhase = "head";
  #buf = new Uint8Array(4096);
  #start = 0;
  #end = 0;

  /** Reads from `conn`; the default on a timeout is to close it. */
  constructor(
    readonly conn: Deno.Conn,
    readonly onTimeout: (input: ConnInput) => void = () => closeQuietly(conn),
  ) {}

  /** Bytes read and not yet consumed. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** Waits up to `ms` for the first byte of another request; false when none came. */
  next(ms: number): Promise<boolean> {
    this.#phase = "idle";
    return this.#fill(ms);
  }

  /** Reads until `marker` is buffered, within `max` bytes and `ms`; returns the end of the marker. */
  async until(marker: number[], max: number, ms: number): Promise<number> {
    this.#phase = "head";
    const deadline = performance.now() + ms;
    // Counted from #start, which moves when the buffer is compacted.
    for (let searched = 0;;) {
      const from = this.#start + Math.max(0, searched - marker.length + 1);
      const found = indexOf(this.#buf, marker, from, this.#end);
      if (found >= 0) {
        const length = found + marker.length - this.#start;
        if (length > max) break;
        return length;
      }
      if (this.buffered >= max) break;
      searched = this.buffered;
      if (!(await this.#fill(Math.max(0, deadline - performance.now())))) throw new Gone();
    }
    throw new BadRequest(431, `a request head of at most ${max} bytes`);
  }

  /** Reads `length` bytes within `ms` and consumes them. */
  async exactly(length: number, ms: number): Promise<Uint8Array<ArrayBuffer>> {
    this.#phase = "body";
    const deadline = performance.now() + ms;
    while (this.buffered < length) {
      if (!(await this.#fill(Math.max(0, deadline - performance.now())))) throw new Gone();
    }
    return this.take(length).slice();
  }

  /** Consumes `length` buffered bytes. */
  take(length: number): Uint8Array {
    const bytes = this.#buf.subarray(this.#start, this.#start + length);
    this.#start += length;
    return bytes;
  }

  /** Reads once more; false at the end of the stream or when `ms` pass first. */
  async #fill(ms: number): Promise<boolean> {
    // Unread bytes go to the front first: the buffer grows only when they
    // fill it, so it stays within about twice the largest request allowed.
    if (this.#start > 0) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    if (this.#end === this.#buf.length) {
      const grown = new Uint8Array(this.#buf.length * 2);
      grown.set(this.#buf.subarray(0, this.#end));
      this.#buf = grown;
    }
    const timer = setTimeout(() => {
      this.timedOut = this.#phase;
      this.onTimeout(this);
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
}

/**
 * What a read waits for: the first byte of a kept-alive connection's next
 * request, the rest of a request head, or a body.
 */
export type ReadPhase = "idle" | "head" | "body";

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

/**
 * The methods a request may have (method names are case-sensitive); the rest,
 * CONNECT and TRACE among them, are a 501. `new Request` would throw on some.
 */
const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

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
  if (!METHODS.has(method)) throw new BadRequest(501, `method ${method} not implemented`);
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
