/**
 * Writing an HTTP/1.1 answer for lib/observe/http_server.ts: the status
 * line, the headers (with `content-length` and `connection`), the body.
 *
 * @module
 */

// Reason phrases for the statuses sent; node:http's STATUS_CODES would load
// the whole node:http polyfill at start-up for this table.
const REASONS: Record<number, string> = {
  200: "OK",
  201: "Created",
  204: "No Content",
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  413: "Content Too Large",
  421: "Misdirected Request",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

const encoder = new TextEncoder();

/** A short plain-text answer that ends the connection. */
export function errorBytes(status: number, body: string): Uint8Array {
  return encoder.encode(
    `HTTP/1.1 ${status} ${REASONS[status] ?? ""}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
      `content-length: ${encoder.encode(body).length}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/** The bytes of `response`; `last` ends the connection, `head` leaves out the body. */
export async function responseBytes(
  response: Response,
  last: boolean,
  head: boolean,
): Promise<Uint8Array> {
  const body = new Uint8Array(await response.arrayBuffer());
  let text = `HTTP/1.1 ${response.status} ${REASONS[response.status] ?? response.statusText}\r\n`;
  for (const [name, value] of response.headers) {
    if (name !== "content-length" && name !== "connection") text += `${name}: ${value}\r\n`;
  }
  text += `content-length: ${body.length}\r\nconnection: ${last ? "close" : "keep-alive"}\r\n\r\n`;
  const start = encoder.encode(text);
  if (head) return start;
  const bytes = new Uint8Array(start.length + body.length);
  bytes.set(start);
  bytes.set(body, start.length);
  return bytes;
}
