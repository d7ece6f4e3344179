// The log module: control characters escaped, the text format unchanged, and
// a sink that never waits for stderr, dropping and counting when it must.

import assert from "node:assert/strict";
import { getTextFormatter, type LogRecord } from "@logtape/logtape";
import { escapeControl, getLogFormatter } from "../../lib/base/log_format.ts";
import { getBufferedSink } from "../../lib/base/log_sink.ts";

function record(
  message: unknown[],
  properties: Record<string, unknown> = {},
  timestamp = Date.UTC(2026, 10, 24, 21, 3, 19, 865),
  level: LogRecord["level"] = "info",
): LogRecord {
  return {
    category: ["poetry", "connection"],
    level,
    message,
    rawMessage: "",
    timestamp,
    properties,
  };
}

// The formatter setupLogging used before the buffered sink, kept here as the
// reference the new one must match byte for byte.
const before = getTextFormatter({
  timestamp: "date-time-tz",
  category: ".",
  value: (value, inspect) =>
    typeof value === "string" || typeof value === "number" ? String(value) : inspect(value),
});

Deno.test("escapeControl leaves printable text alone", () => {
  const text = "poems/ode-to-the-socket.txt Über 詩 ✓ \u{1F600} ~";
  assert.equal(escapeControl(text), text);
});

Deno.test("escapeControl escapes C0, DEL, C1 and the Unicode line separators", () => {
  assert.equal(escapeControl("a\nb\rc\td"), "a\\nb\\rc\\td");
  assert.equal(escapeControl("\x00\x1b[2J\x7f"), "\\x00\\x1b[2J\\x7f");
  assert.equal(escapeControl("\x85\x9b"), "\\x85\\x9b");
  assert.equal(escapeControl("x\u2028y\u2029z"), "x\\u2028y\\u2029z");
  // A backslash doubles: otherwise a newline and a backslash-n print alike.
  assert.equal(escapeControl("a\\nb"), "a\\\\nb");
  assert.notEqual(escapeControl("a\nb"), escapeControl("a\\nb"));
});

Deno.test("the text format is byte for byte what it was", () => {
  const format = getLogFormatter("text");
  const records = [
    record([
      "",
      "127.0.0.1:36006",
      " got ",
      25,
      " of ",
      25,
      " bytes of ",
      "poems/a.txt",
      " in ",
      2,
      " ms: ",
      "completed",
      ".",
    ]),
    record(["Shut down: ", 3, " served."], {}, Date.UTC(2026, 0, 1, 0, 0, 0, 5), "warning"),
    record(
      ["Serving ", "poems/Über 詩.txt", " (", 1024, " bytes)."],
      {},
      Date.UTC(2026, 0, 1, 0, 0, 0, 50),
      "error",
    ),
    record(
      ["An object: ", { a: 1 }, ", a list ", [1, 2], "."],
      {},
      Date.UTC(1999, 11, 31, 23, 59, 59, 999),
      "debug",
    ),
    record(["Same second, later: ", 1, ""], {}, Date.UTC(1999, 11, 31, 23, 59, 59, 0)),
    record(["Next second: ", 2, ""], {}, Date.UTC(2000, 0, 1, 0, 0, 0, 0)),
  ];
  for (const r of records) assert.equal(format(r), before(r));
});

Deno.test("text logs escape control characters in every value", () => {
  const format = getLogFormatter("text");
  const forged = "x\nServing fake.txt on 127.0.0.1:1.txt";
  const line = format(record(["Serving ", forged, " on ", { path: forged }, "."]));
  assert.equal(line.indexOf("\n"), line.length - 1, "one line, ended by its newline");
  assert.match(line, /Serving x\\nServing fake\.txt on 127\.0\.0\.1:1\.txt on /);
});

Deno.test("the JSON format is as it was", () => {
  const line = getLogFormatter("json")(
    record(["", "127.0.0.1:1", " got ", 25, "."], { peer: "127.0.0.1:1", sent: 25 }),
  );
  assert.equal(
    line,
    '{"@timestamp":"2026-11-24T21:03:19.865Z","level":"INFO","message":"127.0.0.1:1 got 25.",' +
      '"logger":"poetry.connection","peer":"127.0.0.1:1","sent":25}\n',
  );
});

/** A stderr stand-in whose writes complete only when the test says so. */
function heldWriter() {
  const written: string[] = [];
  let release: (() => void) | undefined;
  let held = true;
  const decoder = new TextDecoder();
  return {
    written,
    hold() {
      held = true;
    },
    resume() {
      held = false;
      release?.();
    },
    write(bytes: Uint8Array): Promise<number> {
      const done = () => {
        written.push(decoder.decode(bytes));
        return bytes.length;
      };
      if (!held) return Promise.resolve(done());
      return new Promise((resolve) => {
        release = () => resolve(done());
      });
    },
  };
}

const line = (n: number) => record(["line ", String(n).padStart(2, "0"), ""]);
const plain = (r: LogRecord) => `${r.message.join("")}\n`;

Deno.test("a sink batches records into one write", async () => {
  const writer = heldWriter();
  writer.resume();
  let writes = 0;
  const sink = getBufferedSink(plain, {
    write: (bytes) => {
      writes++;
      return writer.write(bytes);
    },
  });
  for (let i = 0; i < 100; i++) sink(line(i));
  assert.equal(writes, 0, "nothing written inside the logging call");
  await sink.drain();
  assert.equal(writes, 1);
  assert.equal(
    writer.written.join(""),
    Array.from({ length: 100 }, (_, i) => `line ${String(i).padStart(2, "0")}\n`).join(""),
  );
});

Deno.test("a sink drops and counts records while stderr is stalled, then says how many", async () => {
  const writer = heldWriter();
  const sink = getBufferedSink(plain, { write: writer.write, maxChars: 100, batchChars: 10 });
  // "line 00\n" is 8 characters: the first two go to the stalled write, 10
  // more fit beside them, the rest have no room.
  for (let i = 0; i < 50; i++) sink(line(i));
  assert.equal(sink.dropped, 50 - 12);
  writer.resume();
  await sink.drain();
  assert.equal(sink.dropped, 38);
  const text = writer.written.join("");
  assert.match(text, /^line 00\nline 01\n/);
  assert.match(text, /line 11\nDropped 38 log records: stderr was not keeping up\.\n$/);
  // Back to normal: nothing more is dropped or reported.
  sink(line(99));
  await sink.drain();
  assert.equal(sink.dropped, 38);
  assert.match(writer.written.join(""), /keeping up\.\nline 99\n$/);
});

Deno.test("a sink counts the records of a failed write as dropped", async () => {
  let fail = true;
  const written: string[] = [];
  const sink = getBufferedSink(plain, {
    write: (bytes) => {
      if (fail) return Promise.reject(new Deno.errors.BrokenPipe("gone"));
      written.push(new TextDecoder().decode(bytes));
      return Promise.resolve(bytes.length);
    },
  });
  sink(line(1));
  sink(line(2));
  await sink.drain();
  assert.equal(sink.dropped, 2);
  fail = false;
  sink(line(3));
  await sink.drain();
  assert.equal(written.join(""), "line 03\nDropped 2 log records: stderr was not keeping up.\n");
});

Deno.test("a partial write is finished before the next batch", async () => {
  const written: string[] = [];
  const sink = getBufferedSink(plain, {
    write: (bytes) => {
      const n = Math.min(3, bytes.length);
      written.push(new TextDecoder().decode(bytes.subarray(0, n)));
      return Promise.resolve(n);
    },
  });
  sink(line(1));
  sink(line(2));
  await sink.drain();
  assert.equal(written.join(""), "line 01\nline 02\n");
});

Deno.test("flushSync writes what is buffered, unless a write is stuck", async () => {
  const writer = heldWriter();
  const synced: string[] = [];
  const writeSync = (bytes: Uint8Array) => {
    synced.push(new TextDecoder().decode(bytes));
    return bytes.length;
  };
  const sink = getBufferedSink(plain, { write: writer.write, writeSync, flushMs: 0 });
  sink(line(1));
  assert.equal(sink.flushSync(), true);
  assert.deepEqual(synced, ["line 01\n"]);
  sink(line(2));
  await new Promise((resolve) => setTimeout(resolve, 5));
  sink(line(3));
  assert.equal(sink.flushSync(), false, "line 2 is stuck in a write: do not block behind it");
  assert.deepEqual(synced, ["line 01\n"]);
  writer.resume();
  await sink.drain();
  assert.equal(writer.written.join(""), "line 02\nline 03\n");
});

Deno.test("LogTape hands the buffered sink each record uncopied (the pinned 2.4.2 honours its mark)", async () => {
  const { configureSync, getLogger, resetSync } = await import("@logtape/logtape");
  const inner = getBufferedSink(() => "", { write: (bytes) => Promise.resolve(bytes.length) });
  const immediate = Symbol.for("LogTape.sinkSnapshotPolicy.immediate");
  assert.equal(Reflect.get(inner, immediate), true, "getBufferedSink marks its sink");
  // The same mark on a probe sink, and a probe without it as the control.
  const seen = new Map<boolean, LogRecord>();
  const probe = (marked: boolean) => {
    const sink = (r: LogRecord) => void seen.set(marked, r);
    if (marked) Object.defineProperty(sink, immediate, { value: true });
    return sink;
  };
  resetSync();
  configureSync({
    sinks: { marked: probe(true), unmarked: probe(false) },
    loggers: [
      { category: ["snapshot-test"], lowestLevel: "info", sinks: ["marked", "unmarked"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  try {
    getLogger(["snapshot-test"]).info("{peer}", { peer: "127.0.0.1:1" });
    // A copy holds the properties as a value; the record itself resolves them lazily.
    assert.ok(Object.getOwnPropertyDescriptor(seen.get(false)!, "properties")!.value);
    assert.ok(Object.getOwnPropertyDescriptor(seen.get(true)!, "properties")!.get);
    assert.deepEqual(seen.get(true)!.properties, { peer: "127.0.0.1:1" });
  } finally {
    resetSync();
  }
});

Deno.test("a sink lets records share a write for flushMs", async () => {
  const writes: string[] = [];
  const write = (bytes: Uint8Array) => {
    writes.push(new TextDecoder().decode(bytes));
    return Promise.resolve(bytes.length);
  };
  const sink = getBufferedSink(plain, { write, flushMs: 30 });
  sink(line(1));
  await new Promise((resolve) => setTimeout(resolve, 5));
  sink(line(2));
  assert.deepEqual(writes, [], "nothing written before flushMs");
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.deepEqual(writes, ["line 01\nline 02\n"]);
});

Deno.test("a sink cuts its writes at records, at most 4096 bytes each unless one record is longer", async () => {
  const writes: string[] = [];
  const sink = getBufferedSink(plain, {
    write: (bytes) => {
      writes.push(new TextDecoder().decode(bytes));
      return Promise.resolve(bytes.length);
    },
    writeBytes: 4096,
  });
  // 99-byte records, one of 6,000 bytes (é is two bytes in UTF-8), then more.
  for (let i = 0; i < 100; i++) sink(record(["x".repeat(98)]));
  sink(record(["é".repeat(3000)]));
  for (let i = 0; i < 10; i++) sink(record(["y".repeat(98)]));
  await sink.drain();
  for (const write of writes) {
    assert.ok(write.endsWith("\n"), "each write ends a record");
    const size = new TextEncoder().encode(write).length;
    assert.ok(size <= 4096 || !write.slice(0, -1).includes("\n"), `${size} bytes`);
  }
  assert.ok(
    writes.some((w) => w === "é".repeat(3000) + "\n"),
    "the long record is a write of its own",
  );
  assert.equal(
    writes.join(""),
    "x".repeat(98).concat("\n").repeat(100) + "é".repeat(3000) + "\n" +
      "y".repeat(98).concat("\n").repeat(10),
  );
});
