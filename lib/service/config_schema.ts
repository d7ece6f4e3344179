/**
 * The `--config` file's schema (valibot) and its parser (jsonc-parser),
 * loaded on the first config file read.
 *
 * @module
 */

import type * as Valibot from "valibot";
import { parseFault } from "../fixture/fault_spec.ts";
import { parseCidr } from "../policies/access.ts";

// The parser and the schema library are loaded on the first config file
// read, not at every start-up (together they cost ~40 ms of it).
function buildSchemas(v: typeof Valibot) {
  const whole = (name: string, min: number, max: number) =>
    v.pipe(
      v.number(`${name} must be a number`),
      v.integer(`${name} must be a whole number from ${min} to ${max}`),
      v.minValue(min, `${name} must be a whole number from ${min} to ${max}`),
      v.maxValue(max, `${name} must be a whole number from ${min} to ${max}`),
    );
  const seconds = (name: string) =>
    v.pipe(
      v.number(`${name} must be a number of seconds`),
      v.minValue(0, `${name} must be a number of seconds from 0 to 86400`),
      v.maxValue(86_400, `${name} must be a number of seconds from 0 to 86400`),
    );
  const nonEmpty = (name: string) =>
    v.pipe(v.string(`${name} must be a string`), v.nonEmpty(`${name} is empty`));
  const cidrs = (name: string) =>
    v.array(
      v.pipe(
        v.string(`${name} must list strings`),
        v.check((text) => parseCidr(text) !== undefined, `${name} needs addresses or CIDR blocks`),
      ),
      `${name} must be a list, e.g. ["127.0.0.0/8"]`,
    );
  const faults = v.array(
    v.pipe(
      v.string('faults must list strings like "reset-after=100"'),
      v.rawCheck(({ dataset, addIssue }) => {
        if (!dataset.typed) return;
        try {
          parseFault(dataset.value, "fault");
        } catch (err) {
          addIssue({ message: (err as Error).message });
        }
      }),
    ),
    'faults must be a list, e.g. ["reset-after=100"]',
  );

  /** Settings a listener may set, and the top level sets for all of them. */
  const common = {
    iface: v.optional(nonEmpty("iface")),
    "num-bytes": v.optional(whole("num-bytes", 1, 2 ** 30)),
    delay: v.optional(seconds("delay")),
    faults: v.optional(faults),
    allow: v.optional(cidrs("allow")),
    deny: v.optional(cidrs("deny")),
  };

  const listenerSchema = v.strictObject({
    poem: nonEmpty("poem"),
    port: v.optional(whole("port", 0, 65535)),
    "max-connections": v.optional(whole("max-connections", 1, 2 ** 31)),
    // Its name as the control endpoint's proxy (--control): a path segment.
    name: v.optional(v.pipe(
      v.string("name must be a string"),
      v.regex(/^[A-Za-z0-9._-]{1,64}$/, "name must be 1 to 64 letters, digits, '.', '_' or '-'"),
    )),
    ...common,
  }, 'a listener must be an object, e.g. { "poem": "poems/a.txt", "port": 10000 }');

  const configSchema = v.strictObject({
    listeners: v.pipe(
      v.array(listenerSchema, "listeners must be a list of listeners"),
      v.minLength(1, "listeners is empty: declare at least one"),
    ),
    "max-connections": v.optional(whole("max-connections", 1, 2 ** 31)),
    "write-timeout": v.optional(seconds("write-timeout")),
    "drain-timeout": v.optional(seconds("drain-timeout")),
    seed: v.optional(whole("seed", 0, 2 ** 32 - 1)),
    ...common,
  }, 'the file must hold one object, with a "listeners" list');

  return {
    configSchema,
    listenerFields: Object.keys(listenerSchema.entries).join(", "),
    topFields: Object.keys(configSchema.entries).join(", "),
  };
}

/** The schema library, the parser and the schemas built with them. */
export interface Parsers {
  schemas: ReturnType<typeof buildSchemas>;
  v: typeof Valibot;
  jsonc: typeof import("jsonc-parser");
}

let loaded: Promise<Parsers> | undefined;

export function loadParsers(): Promise<Parsers> {
  return loaded ??= (async () => {
    const [v, jsonc] = await Promise.all([import("valibot"), import("jsonc-parser")]);
    return { schemas: buildSchemas(v), v, jsonc };
  })();
}

export type RawConfig = Valibot.InferOutput<ReturnType<typeof buildSchemas>["configSchema"]>;
export type RawListener = RawConfig["listeners"][number];
