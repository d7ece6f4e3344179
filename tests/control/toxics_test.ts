import assert from "node:assert/strict";
import { ApiError } from "../../lib/control/api_error.ts";
import { readToxic, toxicFaults, TOXICS } from "../../lib/control/toxics.ts";
import { parseFault } from "../../lib/fixture/fault_spec.ts";

const specs = (body: Record<string, unknown>) => toxicFaults(readToxic(body));

Deno.test("toxics: each type becomes the fault docs/control.md names, in seconds and bytes", () => {
  assert.deepEqual(specs({ type: "latency", attributes: { latency: 250 } }), ["latency=0.25"]);
  assert.deepEqual(specs({ type: "latency", attributes: { latency: 100, jitter: 150 } }), [
    "latency=0-0.25",
  ]);
  assert.deepEqual(specs({ type: "latency" }), []);
  assert.deepEqual(specs({ type: "bandwidth", attributes: { rate: 64 } }), ["bandwidth=64000"]);
  assert.deepEqual(specs({ type: "bandwidth", attributes: { rate: 0 } }), []);
  assert.deepEqual(specs({ type: "slow_close", attributes: { delay: 1500 } }), [
    "close-delay=1.5",
  ]);
  assert.deepEqual(specs({ type: "timeout", attributes: { timeout: 0 } }), ["timeout=0"]);
  assert.deepEqual(specs({ type: "reset_peer", attributes: { timeout: 20 } }), ["reset-at=0.02"]);
  assert.deepEqual(
    specs({ type: "slicer", attributes: { average_size: 10, size_variation: 4, delay: 2500 } }),
    ["chunks=6-14", "chunk-delay=0.0025"],
  );
  assert.deepEqual(specs({ type: "slicer", attributes: { average_size: 2, size_variation: 5 } }), [
    "chunks=1-7",
  ]);
  assert.deepEqual(specs({ type: "limit_data", attributes: { bytes: 0 } }), ["close-after=0"]);
  assert.deepEqual(
    specs({ type: "limit_data", toxicity: 0.3, attributes: { bytes: 7 } }),
    ["close-after=7,probability=0.3"],
  );
  // Every type, with every attribute set, gives specs the --fault parser takes.
  for (const [type, { attributes }] of Object.entries(TOXICS)) {
    const all = Object.fromEntries(Object.keys(attributes).map((key) => [key, 3]));
    for (const spec of specs({ type, attributes: all, toxicity: 0.5 })) parseFault(spec);
  }
});

Deno.test("toxics: Toxiproxy's defaults: downstream, toxicity 1, name <type>_<stream>, attributes 0", () => {
  assert.deepEqual(readToxic({ type: "slicer" }), {
    name: "slicer_downstream",
    type: "slicer",
    stream: "downstream",
    toxicity: 1,
    attributes: { average_size: 0, size_variation: 0, delay: 0 },
  });
  assert.equal(readToxic({ type: "timeout", stream: "DOWNSTREAM" }).stream, "downstream");
  // An update keeps the name, type and stream; only attributes and toxicity change.
  const before = readToxic({ name: "t", type: "latency", attributes: { latency: 10 } });
  const after = readToxic({
    type: "bandwidth",
    name: "u",
    toxicity: 0.5,
    attributes: { jitter: 5 },
  }, before);
  assert.deepEqual(after, { ...before, toxicity: 0.5, attributes: { latency: 10, jitter: 5 } });
});

Deno.test("toxics: what poetry cannot apply is a 400 in Toxiproxy's shape, never ignored", () => {
  const bad: [unknown, RegExp][] = [
    [{ type: "latency", stream: "upstream" }, /^upstream toxics are not supported/],
    [{ type: "latency", stream: "both" }, /^stream was invalid/],
    [{ type: "down" }, /^invalid toxic type: 'down'/],
    [{}, /^invalid toxic type: ''/],
    [{ type: "latency", attributes: { delay: 1 } }, /^unknown attribute 'delay' for latency/],
    [{ type: "latency", attributes: { latency: -1 } }, /^bad request body: attribute latency/],
    [{ type: "latency", attributes: { latency: 1.5 } }, /^bad request body: attribute latency/],
    [{ type: "latency", attributes: { latency: "1" } }, /^bad request body: attribute latency/],
    [{ type: "latency", attributes: [] }, /^bad request body: attributes/],
    [{ type: "latency", toxicity: 1.1 }, /^bad request body: toxicity/],
    [{ type: "latency", toxicity: "1" }, /^bad request body: toxicity/],
    [{ type: "latency", name: "a/b" }, /^bad request body: a toxic's name/],
    [{ type: 5 }, /^bad request body: type must be a string/],
    [[], /^bad request body: a toxic is a JSON object/],
    [{ type: "slicer", attributes: { average_size: 2 ** 31 } }, /^slicer: /],
  ];
  for (const [body, message] of bad) {
    assert.throws(() => readToxic(body), (err: unknown) => {
      assert.ok(err instanceof ApiError, `${JSON.stringify(body)} gave ${err}`);
      assert.equal(err.status, 400);
      assert.deepEqual(err.body(), { error: err.message, status: 400 });
      assert.match(err.message, message);
      return true;
    });
  }
});
