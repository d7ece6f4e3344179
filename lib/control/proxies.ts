/**
 * The control endpoint's proxies: every listener of the server under a
 * stable name, with its toxics, and the changes Toxiproxy's API makes to
 * them, carried out with the server's own run-time methods (add, close,
 * reopen a listener; set its faults). A proxy's `upstream` names one of the
 * poems the server was started with, never a file of the caller's choosing.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { formatAddress } from "../base/address.ts";
import { PoetryError } from "../base/errors.ts";
import type { PoemListener } from "../core/listener.ts";
import type { Poem } from "../core/poem.ts";
import type { PoetryServer } from "../server/server.ts";
import { ApiError } from "./api_error.ts";
import { isLoopback, parseListen } from "./addresses.ts";
import { isPlainName, readToxic, type Toxic, toxicFaults } from "./toxics.ts";

const log = getLogger(["poetry", "control"]);

/** More would only be a way to use up the process's descriptors. */
export const MAX_PROXIES = 256;
/** Per proxy; each is a fault drawn for every connection. */
export const MAX_TOXICS = 32;

/**
 * A proxy as Toxiproxy's API shows it.
 *
 * @example
 * ```ts
 * import type { ProxyJson } from "./proxies.ts";
 * const proxy: ProxyJson = {
 *   name: "a-short-one_10000",
 *   listen: "127.0.0.1:10000",
 *   upstream: "poems/a-short-one.txt",
 *   enabled: true,
 *   toxics: [],
 * };
 * ```
 */
export interface ProxyJson {
  /** Its name: the key in `/proxies`. */
  name: string;
  /** Where it listens (the address it got, once listening). */
  listen: string;
  /** The poem it serves, as it was named. */
  upstream: string;
  /** Whether it accepts clients. */
  enabled: boolean;
  /** Its toxics, in the order they were added. */
  toxics: Toxic[];
}

interface Entry {
  name: string;
  upstream: string;
  poem: Poem;
  iface: string;
  port: number;
  /** Absent while it has never listened (created disabled) or its re-listen failed. */
  listener?: PoemListener;
  enabled: boolean;
  /** The faults it was started with (`--fault`, `--config`): toxics add to them. */
  base: string[];
  toxics: Toxic[];
}

/**
 * The proxies; see the module doc. Not safe for overlapping changes: the
 * endpoint runs them one at a time.
 *
 * @example
 * ```ts
 * import { serve } from "../server/server.ts";
 * import { ProxyCollection } from "./proxies.ts";
 * const server = await serve(["poems/a-short-one.txt"], { iface: "127.0.0.1", resettable: true });
 * const proxies = new ProxyCollection(server, "127.0.0.1");
 * console.log(Object.keys(proxies.list())); // ["a-short-one_<port>"]
 * await server.shutdown();
 * ```
 */
export class ProxyCollection {
  readonly #server: PoetryServer;
  readonly #iface: string;
  readonly #entries = new Map<string, Entry>();
  /** The poems the server was started with, and the address each was first served on. */
  readonly #poems: { poem: Poem; port: number }[];

  /** Every listener `server` has now becomes a proxy; new ones listen on `iface` by default. */
  constructor(server: PoetryServer, iface: string) {
    this.#server = server;
    this.#iface = iface;
    this.#poems = server.listeners.map(({ poem, addr }) => ({ poem, port: addr.port }));
    for (const [i, listener] of server.listeners.entries()) {
      const stem = listener.poem.path.replace(/^.*\//, "").replace(/\.[^.]*$/, "")
        .replace(/[^A-Za-z0-9._-]/g, "_");
      const derived = `${stem}_${listener.addr.port}`;
      const own = server.listenerName(i);
      const name = own !== undefined && !this.#entries.has(own) ? own : derived;
      this.#entries.set(name, {
        name,
        upstream: listener.poem.path,
        poem: listener.poem,
        iface: listener.addr.hostname,
        port: listener.addr.port,
        listener,
        enabled: true,
        base: server.faultSpecs(i),
        toxics: [],
      });
    }
  }

  /** Every proxy by name, names sorted (as Go writes a map). */
  list(): Record<string, ProxyJson> {
    const names = [...this.#entries.keys()].sort();
    return Object.fromEntries(names.map((name) => [name, this.#json(this.#entries.get(name)!)]));
  }

  /** @throws {ApiError} 404 when there is no such proxy. */
  get(name: string): ProxyJson {
    return this.#json(this.#entry(name));
  }

  /**
   * `POST /proxies`: a new listener for one of the server's poems.
   * @throws {ApiError} 400 for a bad body, 409 when the name or address is taken.
   */
  async create(body: unknown): Promise<ProxyJson> {
    const input = readProxy(body);
    if (this.#entries.has(input.name)) throw ApiError.exists("proxy");
    return this.#json(await this.#add(this.#prepare(input), input.enabled));
  }

  /**
   * `POST /populate`: each proxy created, or replaced when its listen or
   * upstream differ; a proxy that is the same is kept with its toxics.
   * @returns the proxies, and the error that stopped it, if one did.
   */
  async populate(body: unknown): Promise<{ proxies: ProxyJson[]; error?: ApiError }> {
    if (!Array.isArray(body)) throw ApiError.badBody("populate takes a JSON array of proxies");
    const inputs = body.map((proxy, i) => readProxy(proxy, ` at proxy ${i + 1}`));
    const done: ProxyJson[] = [];
    try {
      for (const input of inputs) {
        const existing = this.#entries.get(input.name);
        if (existing && !this.#differs(existing, input)) {
          done.push(this.#json(existing));
          continue;
        }
        const fresh = this.#prepare(input, existing);
        if (existing) this.#close(existing, true);
        done.push(this.#json(await this.#add(fresh, input.enabled)));
      }
    } catch (err) {
      return { proxies: done, error: asApiError(err) };
    }
    return { proxies: done };
  }

  /**
   * `POST`/`PATCH /proxies/{name}`: `enabled` closes it to new clients or
   * listens again; a new `listen` or `upstream` makes it a new listener
   * (with the server's defaults) that keeps its toxics.
   * @throws {ApiError} 404, 400, or 409 when the address is taken.
   */
  async update(name: string, body: unknown): Promise<ProxyJson> {
    const entry = this.#entry(name);
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw ApiError.badBody("a proxy is a JSON object");
    }
    const input = readProxy({ ...this.#json(entry), ...body, name });
    if (this.#differs(entry, input)) {
      const fresh = this.#prepare(input, entry);
      this.#close(entry, true);
      // As Toxiproxy: a replacement that cannot listen leaves the proxy stopped.
      this.#entries.set(name, entry);
      return this.#json(await this.#add(fresh, input.enabled));
    }
    if (input.enabled !== entry.enabled) await this.#enable(entry, input.enabled);
    return this.#json(entry);
  }

  /** `DELETE /proxies/{name}`: its listener closes; transfers in flight finish. */
  remove(name: string): void {
    const entry = this.#entry(name);
    this.#close(entry, true);
    this.#entries.delete(name);
    log.info("Control: removed proxy {name}.", { name });
  }

  /** `POST /reset`: every toxic removed, every proxy enabled. */
  async reset(): Promise<void> {
    for (const entry of this.#entries.values()) {
      if (entry.toxics.length > 0) {
        entry.toxics = [];
        this.#apply(entry);
      }
      if (!entry.enabled) await this.#enable(entry, true);
    }
    log.info("Control: reset: no toxics, every proxy enabled.");
  }

  /** A proxy's toxics. @throws {ApiError} 404. */
  toxics(name: string): Toxic[] {
    return this.#entry(name).toxics;
  }

  /** One toxic. @throws {ApiError} 404 for either. */
  toxic(name: string, toxic: string): Toxic {
    const found = this.#entry(name).toxics.find((t) => t.name === toxic);
    if (!found) throw ApiError.notFound("toxic");
    return found;
  }

  /**
   * Adds a toxic: its faults apply to the proxy's next clients.
   * @throws {ApiError} 404, 400 for one poetry cannot apply, 409 for a taken name.
   */
  addToxic(name: string, body: unknown): Toxic {
    const entry = this.#entry(name);
    const toxic = readToxic(body);
    if (entry.toxics.some((t) => t.name === toxic.name)) throw ApiError.exists("toxic");
    if (entry.toxics.length >= MAX_TOXICS) {
      throw new ApiError(`a proxy has at most ${MAX_TOXICS} toxics`, 400);
    }
    this.#apply(entry, [...entry.toxics, toxic]);
    return toxic;
  }

  /** Changes a toxic's attributes or toxicity. @throws {ApiError} 404, 400. */
  updateToxic(name: string, toxicName: string, body: unknown): Toxic {
    const entry = this.#entry(name);
    const before = this.toxic(name, toxicName);
    const toxic = readToxic(body, before);
    this.#apply(entry, entry.toxics.map((t) => t === before ? toxic : t));
    return toxic;
  }

  /** Removes a toxic. @throws {ApiError} 404. */
  removeToxic(name: string, toxicName: string): void {
    const entry = this.#entry(name);
    const toxic = this.toxic(name, toxicName);
    this.#apply(entry, entry.toxics.filter((t) => t !== toxic));
  }

  #entry(name: string): Entry {
    const entry = this.#entries.get(name);
    if (!entry) throw ApiError.notFound("proxy");
    return entry;
  }

  #json(entry: Entry): ProxyJson {
    const addr = entry.listener?.addr ??
      { transport: "tcp" as const, hostname: entry.iface, port: entry.port };
    return {
      name: entry.name,
      listen: formatAddress(addr),
      upstream: entry.upstream,
      enabled: entry.enabled,
      toxics: entry.toxics,
    };
  }

  /** Whether `input` asks for another address or poem than `entry` has (Toxiproxy's `Differs`). */
  #differs(entry: Entry, input: ProxyInput): boolean {
    const { hostname, port } = parseListen(input.listen, this.#iface);
    const same = hostname === entry.iface ||
      (hostname === "localhost" && isLoopback(entry.iface));
    return !same || port !== entry.port || input.upstream !== entry.upstream;
  }

  /** A new proxy, checked; `from` is the one it replaces (its toxics and base faults carry over). */
  #prepare(input: ProxyInput, from?: Entry): Entry {
    if (!from && this.#entries.size >= MAX_PROXIES) {
      throw new ApiError(`at most ${MAX_PROXIES} proxies`, 400);
    }
    const { hostname, port } = parseListen(input.listen, this.#iface);
    return {
      name: input.name,
      upstream: input.upstream,
      poem: this.#poemFor(input.upstream),
      iface: hostname,
      port,
      enabled: false,
      base: from?.base ?? [],
      toxics: from?.toxics ?? [],
    };
  }

  /** Starts a prepared proxy (listening when `enabled`) and keeps it once it does. */
  async #add(entry: Entry, enabled: boolean): Promise<Entry> {
    if (enabled) await this.#enable(entry, true);
    this.#entries.set(entry.name, entry);
    log.info("Control: proxy {name} serves {poem} on {listen}{state}.", {
      name: entry.name,
      poem: entry.poem.path,
      listen: this.#json(entry).listen,
      state: entry.enabled ? "" : " (disabled)",
    });
    return entry;
  }

  /** Listens (again) or closes; a failed listen leaves it disabled. */
  async #enable(entry: Entry, enabled: boolean): Promise<void> {
    if (!enabled) {
      this.#close(entry, false);
      return;
    }
    try {
      entry.listener = entry.listener
        ? await this.#server.reopenListener(entry.listener)
        : await this.#server.addListener({
          poem: entry.poem,
          iface: entry.iface,
          port: entry.port,
          faults: this.#specs(entry),
        });
    } catch (err) {
      entry.listener = undefined;
      throw asApiError(err);
    }
    entry.port = entry.listener.addr.port;
    entry.enabled = true;
  }

  #close(entry: Entry, remove: boolean): void {
    if (entry.listener && (entry.enabled || remove)) {
      this.#server.closeListener(entry.listener, { remove });
    }
    if (remove) entry.listener = undefined;
    entry.enabled = false;
  }

  #specs(entry: Entry, toxics = entry.toxics): string[] {
    return [...entry.base, ...toxics.flatMap(toxicFaults)];
  }

  /** Sets a proxy's toxics and gives its listener their faults, or neither. */
  #apply(entry: Entry, toxics = entry.toxics): void {
    if (entry.listener) {
      try {
        this.#server.setFaults(entry.listener, this.#specs(entry, toxics));
      } catch (err) {
        throw asApiError(err);
      }
    }
    entry.toxics = toxics;
  }

  /** One of the server's poems, by path, file name or a first listener's address. */
  #poemFor(upstream: string): Poem {
    const port = /^(?:\[[0-9A-Fa-f:.]+\]|[^:\[\]\s]*):(\d{1,5})$/.exec(upstream)?.[1];
    const found = this.#poems.find(({ poem, port: p }) =>
      upstream === poem.path || upstream === poem.path.replace(/^.*\//, "") ||
      (port !== undefined && Number(port) === p)
    );
    if (!found) {
      throw new ApiError(
        `upstream '${upstream}' is not one of this server's poems: name one by its path (e.g. ${
          this.#poems[0]?.poem.path
        }) or by the address it is served on (e.g. localhost:${this.#poems[0]?.port})`,
        400,
      );
    }
    return found.poem;
  }
}

interface ProxyInput {
  name: string;
  listen: string;
  upstream: string;
  enabled: boolean;
}

/** A proxy from a request body, checked as Toxiproxy checks it. */
function readProxy(body: unknown, where = ""): ProxyInput {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw ApiError.badBody(`a proxy is a JSON object${where}`);
  }
  const input = body as Record<string, unknown>;
  for (const key of ["name", "listen", "upstream"]) {
    if (input[key] !== undefined && typeof input[key] !== "string") {
      throw ApiError.badBody(`${key} must be a string${where}`);
    }
  }
  if (input.enabled !== undefined && typeof input.enabled !== "boolean") {
    throw ApiError.badBody(`enabled must be true or false${where}`);
  }
  const name = (input.name ?? "") as string;
  const upstream = (input.upstream ?? "") as string;
  if (name === "") throw new ApiError(`missing required field: name${where}`, 400);
  if (upstream === "") throw new ApiError(`missing required field: upstream${where}`, 400);
  if (!isPlainName(name)) {
    throw ApiError.badBody(`a proxy's name is 1 to 128 characters, no '/' or control characters`);
  }
  return {
    name,
    upstream,
    // Go's zero value: the system picks the port (Toxiproxy listens on ":0").
    listen: (input.listen ?? ":0") as string,
    enabled: (input.enabled ?? true) as boolean,
  };
}

/** The server's errors as the API answers them: an address in use is a conflict. */
function asApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (/already in use/.test(message)) return new ApiError(message, 409);
  if (err instanceof PoetryError) return new ApiError(message, err.exitCode === 2 ? 400 : 500);
  return new ApiError(message, 500);
}
