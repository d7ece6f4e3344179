/**
 * Who may be served: `--allow` and `--deny` address blocks.
 *
 * CIDR matching is `node:net`'s BlockList (shipped with Deno), which also
 * matches IPv4-mapped IPv6 peers (`::ffff:127.0.0.1`) against IPv4 blocks.
 *
 * @module
 */

import type { BlockList } from "node:net";
import { type Decision, Refusal, type SenderFactory } from "../core/connection.ts";
import type { PoemContent } from "../core/poem.ts";
import type { SenderConn } from "../core/sender.ts";

/**
 * `node:net`, loaded at its first use rather than with the program: it took
 * some 20 ms of every start-up (`main.ts --version`: 130 → 112 ms without
 * it), and most runs have no `--allow` or `--deny`.
 */
function net(): typeof import("node:net") {
  return loaded ??= process.getBuiltinModule("node:net") as typeof import("node:net");
}
let loaded: typeof import("node:net") | undefined;

/**
 * A parsed address block.
 *
 * @example
 * ```ts
 * import { type Cidr, parseCidr } from "./access.ts";
 * const block: Cidr | undefined = parseCidr("fd00::/8");
 * console.log(block?.family); // "ipv6"
 * ```
 */
export interface Cidr {
  /** The network address. */
  address: string;
  /** Prefix length in bits. */
  prefix: number;
  /** Address family. */
  family: "ipv4" | "ipv6";
}

/**
 * Parses `ADDRESS` or `ADDRESS/PREFIX`, IPv4 or IPv6. A bare address is a
 * block of one. Returns `undefined` for anything else, including an IPv6
 * zone id (`fe80::1%lo`), which `node:net`'s BlockList cannot match.
 *
 * @example
 * ```ts
 * import { parseCidr } from "./access.ts";
 * parseCidr("10.0.0.0/8"); // { address: "10.0.0.0", prefix: 8, family: "ipv4" }
 * parseCidr("10.0.0.0/33"); // undefined
 * ```
 */
export function parseCidr(text: string): Cidr | undefined {
  const match = /^([^/]+?)(?:\/(\d{1,3}))?$/.exec(text.trim());
  if (!match) return undefined;
  const version = net().isIP(match[1]);
  if (version === 0) return undefined;
  const bits = version === 4 ? 32 : 128;
  const prefix = match[2] === undefined ? bits : Number(match[2]);
  if (prefix > bits) return undefined;
  const cidr: Cidr = { address: match[1], prefix, family: version === 4 ? "ipv4" : "ipv6" };
  // isIP accepts what BlockList refuses (zone ids: fe80::1%lo), so ask the
  // BlockList that will match clients, or the server fails after validation.
  try {
    new (net().BlockList)().addSubnet(cidr.address, cidr.prefix, cidr.family);
  } catch {
    return undefined;
  }
  return cidr;
}

/**
 * Decides whether a client address may be served. Deny wins; when any
 * allow block is given, everything outside the allow blocks is denied.
 *
 * @example
 * ```ts
 * import { AccessList } from "./access.ts";
 * const access = new AccessList({ allow: ["127.0.0.0/8"], deny: ["127.0.0.2"] });
 * access.permits("127.0.0.1"); // true
 * access.permits("127.0.0.2"); // false
 * access.permits("::1"); // false
 * ```
 */
export class AccessList {
  readonly #allow?: BlockList;
  readonly #deny?: BlockList;

  /** Builds the list; throws `TypeError` on text that is not a CIDR block. */
  constructor(options: { allow?: string[]; deny?: string[] } = {}) {
    this.#allow = blockList(options.allow);
    this.#deny = blockList(options.deny);
  }

  /** True when neither list was given: everyone is served. */
  get open(): boolean {
    return this.#allow === undefined && this.#deny === undefined;
  }

  /** Whether a client at this address may be served. */
  permits(address: string): boolean {
    const family = net().isIP(address) === 6 ? "ipv6" : "ipv4";
    if (this.#deny?.check(address, family)) return false;
    return this.#allow === undefined || this.#allow.check(address, family);
  }
}

/**
 * `--allow`/`--deny` as a wrapper around a listener's factory: a client the
 * list does not permit is refused, closed without a byte.
 *
 * @example
 * ```ts
 * import { PoemFactory } from "../core/connection.ts";
 * import { AccessFactory, AccessList } from "./access.ts";
 * const factory = new AccessFactory(new PoemFactory({}), new AccessList({ allow: ["127.0.0.0/8"] }));
 * ```
 */
export class AccessFactory implements SenderFactory {
  readonly #inner: SenderFactory;
  readonly #list: AccessList;

  /** Lets `inner` decide for the clients `list` permits. */
  constructor(inner: SenderFactory, list: AccessList) {
    this.#inner = inner;
    this.#list = list;
  }

  /** Refuses a client the list does not permit; the inner factory decides for the others. */
  build(conn: SenderConn, content: PoemContent): Decision | Promise<Decision> {
    const peer = conn.remoteAddr as Deno.NetAddr;
    if (!this.#list.permits(peer.hostname)) return new Refusal(conn, "denied");
    return this.#inner.build(conn, content);
  }
}

function blockList(texts: string[] | undefined): BlockList | undefined {
  if (!texts?.length) return undefined;
  const list = new (net().BlockList)();
  for (const text of texts) {
    const cidr = parseCidr(text);
    if (!cidr) throw new TypeError(`not an address or CIDR block: ${text}`);
    list.addSubnet(cidr.address, cidr.prefix, cidr.family);
  }
  return list;
}
