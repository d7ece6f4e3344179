/**
 * Toxiproxy's toxics as poetry's faults: one table, {@linkcode TOXICS}, says
 * for each toxic type its attributes (Toxiproxy's names, units and zero
 * defaults) and the fault specs it becomes; {@linkcode readToxic} checks a
 * toxic's JSON against it, and the specs are parsed by the same
 * `parseFault` as `--fault`. Only `downstream` toxics (server → client)
 * exist: a poem server reads nothing its client sends.
 *
 * @module
 */

import { parseFault } from "../fixture/fault_spec.ts";
import { ApiError } from "./api_error.ts";

/**
 * One toxic type: its attributes with their defaults, and the fault specs
 * (without a probability) those attributes become.
 *
 * @example
 * ```ts
 * import { TOXICS } from "./toxics.ts";
 * console.log(TOXICS.limit_data.faults({ bytes: 100 })); // ["close-after=100"]
 * ```
 */
export interface ToxicType {
  /** Attribute names with Toxiproxy's default (Go's zero value). */
  readonly attributes: Readonly<Record<string, number>>;
  /** The fault specs; `[]` when the attributes ask for nothing (a bandwidth rate of 0). */
  faults(attributes: Record<string, number>): string[];
}

const seconds = (ms: number) => `${ms / 1000}`;

/**
 * The toxic types poetry applies, by Toxiproxy's name. Times are Toxiproxy's
 * units: milliseconds, and microseconds for `slicer`'s delay.
 *
 * @example
 * ```ts
 * import { TOXICS } from "./toxics.ts";
 * console.log(Object.keys(TOXICS).join(", "));
 * ```
 */
export const TOXICS: Readonly<Record<string, ToxicType>> = {
  latency: {
    attributes: { latency: 0, jitter: 0 },
    faults: ({ latency, jitter }) => {
      if (jitter === 0) return latency === 0 ? [] : [`latency=${seconds(latency)}`];
      const min = Math.max(0, latency - jitter);
      return [`latency=${seconds(min)}-${seconds(latency + jitter)}`];
    },
  },
  bandwidth: {
    // KB/s, and Toxiproxy's KB is 1000 bytes (a byte per millisecond per unit).
    attributes: { rate: 0 },
    faults: ({ rate }) => rate === 0 ? [] : [`bandwidth=${rate * 1000}`],
  },
  slow_close: {
    attributes: { delay: 0 },
    faults: ({ delay }) => [`close-delay=${seconds(delay)}`],
  },
  timeout: {
    attributes: { timeout: 0 },
    faults: ({ timeout }) => [`timeout=${seconds(timeout)}`],
  },
  reset_peer: {
    attributes: { timeout: 0 },
    faults: ({ timeout }) => [`reset-at=${seconds(timeout)}`],
  },
  slicer: {
    attributes: { average_size: 0, size_variation: 0, delay: 0 },
    faults: ({ average_size, size_variation, delay }) => {
      const min = Math.max(1, average_size - size_variation);
      const max = Math.max(min, average_size + size_variation);
      const chunks = average_size === 0 ? [] : [`chunks=${min}-${max}`];
      return delay === 0 ? chunks : [...chunks, `chunk-delay=${delay / 1_000_000}`];
    },
  },
  limit_data: {
    attributes: { bytes: 0 },
    faults: ({ bytes }) => [`close-after=${bytes}`],
  },
};

/**
 * A toxic as the API shows it (Toxiproxy's JSON), and the fault specs it
 * applies as.
 *
 * @example
 * ```ts
 * import type { Toxic } from "./toxics.ts";
 * const toxic: Toxic = {
 *   name: "limit_data_downstream",
 *   type: "limit_data",
 *   stream: "downstream",
 *   toxicity: 1,
 *   attributes: { bytes: 100 },
 * };
 * ```
 */
export interface Toxic {
  /** Unique in its proxy; `<type>_<stream>` when not given. */
  name: string;
  /** A key of {@linkcode TOXICS}. */
  type: string;
  /** Always `downstream` here. */
  stream: "downstream";
  /** Share of connections that get it, 0..1. */
  toxicity: number;
  /** Every attribute of its type. */
  attributes: Record<string, number>;
}

/**
 * Whether a proxy's or toxic's name is one the API takes: 1 to 128
 * characters, no `/` (it is a path segment) and no control characters.
 *
 * @example
 * ```ts
 * import { isPlainName } from "./toxics.ts";
 * isPlainName("latency_downstream"); // true
 * isPlainName("a/b"); // false
 * ```
 */
export function isPlainName(name: string): boolean {
  return /^[^/\p{Cc}]{1,128}$/u.test(name);
}

/**
 * The fault specs a toxic applies as, each with its toxicity as the
 * probability: `close-after=100,probability=0.5`.
 *
 * @example
 * ```ts
 * import { toxicFaults } from "./toxics.ts";
 * const specs = toxicFaults({
 *   name: "t",
 *   type: "limit_data",
 *   stream: "downstream",
 *   toxicity: 0.5,
 *   attributes: { bytes: 100 },
 * });
 * console.log(specs); // ["close-after=100,probability=0.5"]
 * ```
 */
export function toxicFaults(toxic: Toxic): string[] {
  const specs = TOXICS[toxic.type].faults(toxic.attributes);
  return toxic.toxicity < 1 ? specs.map((s) => `${s},probability=${toxic.toxicity}`) : specs;
}

/**
 * Reads a toxic from a request body: a new one (`before` absent: `type`
 * needed, Toxiproxy's defaults for the rest), or changes to `before` (only
 * `attributes` and `toxicity` count, as in Toxiproxy). Every spec it gives
 * is checked with `parseFault`.
 *
 * @example
 * ```ts
 * import { readToxic } from "./toxics.ts";
 * const toxic = readToxic({ type: "latency", attributes: { latency: 100 } });
 * console.log(toxic.name, toxic.attributes); // latency_downstream { latency: 100, jitter: 0 }
 * ```
 * @throws {ApiError} 400 for an unknown type or attribute, an `upstream`
 * stream, or a value out of range.
 */
export function readToxic(body: unknown, before?: Toxic): Toxic {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw ApiError.badBody("a toxic is a JSON object");
  }
  const input = body as Record<string, unknown>;
  const text = (key: string) => {
    const value = input[key];
    if (value !== undefined && typeof value !== "string") {
      throw ApiError.badBody(`${key} must be a string`);
    }
    return value as string | undefined;
  };
  const type = before?.type ?? text("type") ?? "";
  if (!Object.hasOwn(TOXICS, type)) {
    throw new ApiError(
      `invalid toxic type: '${type}'; poetry applies ${Object.keys(TOXICS).join(", ")}`,
      400,
    );
  }
  let stream = before?.stream ?? text("stream") ?? "downstream";
  if (!before) {
    stream = stream.toLowerCase() as "downstream";
    if (stream === "upstream") {
      throw new ApiError(
        "upstream toxics are not supported: poetry only sends (server → client), so only downstream toxics apply",
        400,
      );
    }
    if (stream !== "downstream") {
      throw new ApiError("stream was invalid, can be either upstream or downstream", 400);
    }
  }
  const name = before?.name ?? text("name") ?? `${type}_${stream}`;
  if (!isPlainName(name)) {
    throw ApiError.badBody("a toxic's name is 1 to 128 characters, no '/' or control characters");
  }
  let toxicity = before?.toxicity ?? 1;
  if (input.toxicity !== undefined) {
    if (typeof input.toxicity !== "number" || !(input.toxicity >= 0 && input.toxicity <= 1)) {
      throw ApiError.badBody("toxicity must be a number from 0 to 1");
    }
    toxicity = input.toxicity;
  }
  const attributes = { ...(before?.attributes ?? TOXICS[type].attributes) };
  const given = input.attributes ?? {};
  if (typeof given !== "object" || given === null || Array.isArray(given)) {
    throw ApiError.badBody("attributes must be a JSON object");
  }
  for (const [key, value] of Object.entries(given)) {
    if (!Object.hasOwn(attributes, key)) {
      throw new ApiError(
        `unknown attribute '${key}' for ${type}: it has ${Object.keys(attributes).join(", ")}`,
        400,
      );
    }
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
      throw ApiError.badBody(`attribute ${key} must be a whole number from 0, got ${value}`);
    }
    attributes[key] = value;
  }
  const toxic: Toxic = { name, type, stream: "downstream", toxicity, attributes };
  for (const spec of toxicFaults(toxic)) {
    try {
      parseFault(spec, type);
    } catch (err) {
      throw new ApiError(`${type}: ${err instanceof Error ? err.message : err}`, 400);
    }
  }
  return toxic;
}
