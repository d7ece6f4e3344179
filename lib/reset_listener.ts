/**
 * A listening socket that can reset its connections, for listeners whose
 * faults include `reset-after`. `Deno.Conn` has no way to send a RST in
 * Deno 2.9.6 (no SO_LINGER, no descriptor to set it on); `node:net`'s
 * `Socket.resetAndDestroy()` does. Only such a listener accepts through
 * `node:net`; every other one stays on `Deno.listen`, the fast path.
 *
 * @module
 */

import type net from "node:net";
import type { FaultableConn } from "./faults.ts";

/**
 * A `node:net` server that hands out its connections one `accept()` at a
 * time, as a `Deno.Listener` does, so a `PoemListener` can drive it.
 *
 * @example
 * ```ts
 * import { ResettableListener } from "./reset_listener.ts";
 * const listener = new ResettableListener({ transport: "tcp", hostname: "127.0.0.1", port: 0 });
 * await listener.ready;
 * console.log(listener.addr.port > 0); // true
 * listener.close();
 * ```
 */
export class ResettableListener {
  /** The address it listens on, once {@linkcode ResettableListener.ready} has resolved. */
  addr: Deno.NetAddr;
  /** Resolves once it listens; rejects with the `node:net` error when it cannot. */
  readonly ready: Promise<void>;
  #server?: net.Server;
  readonly #queue: net.Socket[] = [];
  #waiting?: PromiseWithResolvers<ResettableConn>;
  #closed = false;
  /** Accepted sockets not handed out yet, and the loop that hands them out. */
  readonly #settling: net.Socket[] = [];
  #settler?: Promise<void>;
  #turn?: Promise<ReactorTurn | undefined>;

  /**
   * Starts listening on `addr` (port 0 picks one), with `SO_REUSEPORT` when
   * `reusePort` (workers); wait for {@linkcode ResettableListener.ready}.
   */
  constructor(addr: Deno.NetAddr, reusePort = false) {
    this.addr = addr;
    this.ready = this.#listen(addr, reusePort);
    this.ready.catch(() => {});
  }

  async #listen(addr: Deno.NetAddr, reusePort: boolean): Promise<void> {
    // Imported here, where it is needed, not by every start-up's module graph.
    const { createServer } = await import("node:net");
    // allowHalfOpen: a client's FIN must not end our side (a half-close
    // still reads the poem); pauseOnConnect: nothing is read until asked.
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
      // Handed over once the reactor has seen it, not now: in Deno 2.9.6 a
      // first write before that is queued, and a queued write to a client
      // that has already half-closed (nc -N, Python's shutdown(SHUT_WR))
      // fails with EPIPE: the client gets nothing (ReactorTurn below;
      // tests/faults/workers_attack_test.ts has the half-closing client).
      this.#settle(socket);
    });
    this.#server = server;
    if (this.#closed) return;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      // reusePort is Node 22's option, which Deno's node:net has.
      server.listen({ host: addr.hostname, port: addr.port, reusePort }, () => {
        server.off("error", reject);
        const bound = server.address() as net.AddressInfo;
        this.addr = { transport: "tcp", hostname: bound.address, port: bound.port };
        resolve();
      });
    });
    if (this.#closed) server.close();
  }

  /** Hands `socket` over once the runtime's reactor has seen it (see {@linkcode ReactorTurn}). */
  #settle(socket: net.Socket): void {
    this.#settling.push(socket);
    if (this.#settler) return;
    this.#settler = (async () => {
      // Without the pair (no permission, no descriptor), a timer turn, which
      // is enough on an idle machine.
      this.#turn ??= ReactorTurn.open(this.addr.hostname).catch(() => undefined);
      const turn = await this.#turn;
      while (this.#settling.length > 0) {
        const arrived = this.#settling.splice(0);
        try {
          if (turn) await turn.wait();
        } catch {
          // Only when closing: hand them over anyway (and a closed listener destroys them).
        }
        if (!turn) await new Promise((resolve) => setTimeout(resolve, 0));
        for (const socket of arrived) this.#arrived(socket);
      }
      this.#settler = undefined;
    })();
  }

  #arrived(socket: net.Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    if (this.#waiting) {
      this.#waiting.resolve(new ResettableConn(socket));
      this.#waiting = undefined;
    } else {
      this.#queue.push(socket);
    }
  }

  /** The next client. Typed as `Deno.Conn` for `PoemListener`, which uses only what {@linkcode ResettableConn} has. */
  accept(): Promise<Deno.Conn> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("listener closed"));
    const socket = this.#queue.shift();
    // The listener and the sender use only FaultableConn's members (and
    // readProxyHeader read/close): the cast keeps PoemListener unchanged.
    if (socket) return Promise.resolve(new ResettableConn(socket) as unknown as Deno.Conn);
    this.#waiting = Promise.withResolvers<ResettableConn>();
    return this.#waiting.promise as unknown as Promise<Deno.Conn>;
  }

  /** Stops accepting; connections already handed out go on. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server?.close();
    this.#turn?.then((turn) => turn?.close());
    for (const socket of this.#settling.splice(0)) socket.destroy();
    this.#waiting?.reject(new Deno.errors.BadResource("listener closed"));
    for (const socket of this.#queue.splice(0)) socket.destroy();
  }
}

/**
 * A `node:net` socket with the small interface the sender uses, and a real
 * reset. Errors become the `Deno.errors` classes the sender knows, so a
 * client that leaves is still `client left`.
 *
 * @example
 * ```ts
 * import { ResettableConn, ResettableListener } from "./reset_listener.ts";
 * const listener = new ResettableListener({ transport: "tcp", hostname: "127.0.0.1", port: 0 });
 * await listener.ready;
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const conn = (await listener.accept()) as unknown as ResettableConn;
 * await conn.write(new TextEncoder().encode("Hi\n"));
 * conn.reset(); // the client reads "Hi\n", then ECONNRESET
 * client.close();
 * listener.close();
 * ```
 */
export class ResettableConn implements FaultableConn {
  /** The client's address. */
  readonly remoteAddr: Deno.NetAddr;
  readonly #socket: net.Socket;
  #error?: Error;
  #ended = false;

  /** Wraps an accepted, paused socket. */
  constructor(socket: net.Socket) {
    this.#socket = socket;
    this.remoteAddr = {
      transport: "tcp",
      hostname: socket.remoteAddress ?? "",
      port: socket.remotePort ?? 0,
    };
    // An unhandled 'error' event would end the process; keep it for the next call.
    socket.on("error", (err) => this.#error = toDenoError(err));
    socket.on("end", () => this.#ended = true);
  }

  /** Writes all of `p`; resolves once the kernel has it. */
  write(p: Uint8Array): Promise<number> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.#socket.destroyed) return Promise.reject(new Deno.errors.BadResource("closed"));
    return new Promise((resolve, reject) => {
      this.#socket.write(p, (err) => err ? reject(toDenoError(err)) : resolve(p.length));
    });
  }

  /** Sends FIN; the client reads end of stream. */
  closeWrite(): Promise<void> {
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      const done = () => {
        this.#socket.off("error", failed);
        resolve();
      };
      const failed = (err: Error) => {
        this.#socket.off("finish", done);
        reject(toDenoError(err));
      };
      this.#socket.once("finish", done);
      this.#socket.once("error", failed);
      this.#socket.end();
    });
  }

  /** Reads what the client sent, or `null` at its end of stream. */
  read(p: Uint8Array): Promise<number | null> {
    const socket = this.#socket;
    if (this.#error) return Promise.reject(this.#error);
    if (this.#ended || socket.destroyed) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        socket.off("data", onData).off("end", onEnd).off("close", onEnd).off("error", onError);
        socket.pause();
      };
      const onData = (chunk: Uint8Array) => {
        cleanup();
        const n = Math.min(chunk.length, p.length);
        p.set(chunk.subarray(0, n));
        if (n < chunk.length) socket.unshift(chunk.subarray(n));
        resolve(n);
      };
      const onEnd = () => {
        cleanup();
        resolve(null);
      };
      const onError = (err: Error) => {
        cleanup();
        reject(toDenoError(err));
      };
      socket.on("data", onData).once("end", onEnd).once("close", onEnd).once("error", onError);
      socket.resume();
    });
  }

  /** Closes the connection (a FIN, or a RST if input is left unread, as any close). */
  close(): void {
    this.#socket.destroy();
  }

  /** Closes with a RST: SO_LINGER 0, unsent bytes dropped, the client reads ECONNRESET. */
  reset(): void {
    this.#socket.resetAndDestroy();
  }

  /** Sends small writes at once rather than merging them (no Nagle). */
  setNoDelay(noDelay = true): void {
    this.#socket.setNoDelay(noDelay);
  }
}

/** The `Deno.errors` class the sender tells a client's leaving by. */
function toDenoError(err: Error): Error {
  const code = (err as { code?: string }).code;
  switch (code) {
    case "ECONNRESET":
      return new Deno.errors.ConnectionReset(err.message);
    case "EPIPE":
      return new Deno.errors.BrokenPipe(err.message);
    case "ECONNABORTED":
      return new Deno.errors.ConnectionAborted(err.message);
    case "ENOTCONN":
      return new Deno.errors.NotConnected(err.message);
    case "ERR_STREAM_DESTROYED":
    case "ERR_SOCKET_CLOSED":
    case "ERR_STREAM_WRITE_AFTER_END":
      return new Deno.errors.BadResource(err.message);
    default:
      return err;
  }
}

/**
 * Waits for a turn of the runtime's I/O reactor, witnessed by a byte sent
 * to itself over a loopback pair: its read completes only once the reactor
 * has polled the descriptors, so every socket accepted before the byte was
 * sent then has its readiness known.
 *
 * Why: in Deno 2.9.6 a `node:net` write that cannot go out at once is
 * queued, and a queued write to a client that half-closed without sending
 * anything fails with EPIPE (libs/core/uv_compat/tcp.rs takes that FIN for
 * a broken connection): the client gets no byte. A socket's first write
 * before the reactor has seen it writable is such a queued write. A timer
 * turn does not ensure that: seen on a busy machine, first writes up to
 * 40 ms after the connection event were still queued.
 */
class ReactorTurn {
  readonly #out: Deno.Conn;
  readonly #in: Deno.Conn;
  readonly #buffer = new Uint8Array(64);

  private constructor(out: Deno.Conn, inbound: Deno.Conn) {
    this.#out = out;
    this.#in = inbound;
  }

  /**
   * Opens the pair on `hostname` (the listener's address; a wildcard means
   * its loopback), or rejects: without the permission for it, rather than
   * prompt for one.
   */
  static async open(hostname: string): Promise<ReactorTurn> {
    const host = hostname === "0.0.0.0" ? "127.0.0.1" : hostname === "::" ? "::1" : hostname;
    if (Deno.permissions.querySync({ name: "net", host }).state !== "granted") {
      throw new Deno.errors.NotCapable(`no net permission for ${host}`);
    }
    const listener = Deno.listen({ hostname: host, port: 0 });
    try {
      const [inbound, out] = await Promise.all([
        listener.accept(),
        Deno.connect({ hostname: host, port: (listener.addr as Deno.NetAddr).port }),
      ]);
      return new ReactorTurn(out, inbound);
    } finally {
      listener.close();
    }
  }

  /**
   * Resolves after a reactor turn that began after this call: the read is
   * under way before the byte is sent, and the runtime (tokio) forgets a
   * socket's readiness after a read that found nothing or fewer bytes than
   * it asked for, so the read waits for the reactor to see the byte.
   */
  async wait(): Promise<void> {
    const read = this.#in.read(this.#buffer);
    await this.#out.write(PING);
    if (await read === null) throw new Deno.errors.UnexpectedEof("the loopback pair closed");
  }

  close(): void {
    this.#out.close();
    this.#in.close();
  }
}

const PING = new Uint8Array([1]);
