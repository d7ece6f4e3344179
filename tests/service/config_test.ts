// The --config file's parts that need no server: how its settings and the
// command line's combine. Errors and serving are in tests/integration/config_test.ts.

import assert from "node:assert/strict";
import { combineConfig, parseConfig } from "../../lib/service/config.ts";

const TEXT = `{
  // top level: defaults
  "iface": "127.0.0.1",
  "delay": 0.1,
  "faults": ["jitter=0.05"],
  "write-timeout": 5,
  "listeners": [
    { "poem": "a.txt", "port": 10000 },
    { "poem": "b.txt", "num-bytes": 3, "faults": [], "iface": "::1" },
    { "poem": "/abs/c.txt", "delay": 0, "max-connections": 2 },
  ],
}`;

Deno.test("config: the command line replaces the top level; a listener's own settings win over both", async () => {
  const config = await parseConfig(TEXT, "conf/poetry.jsonc");
  assert.deepEqual(config.listeners.map((l) => l.poem), ["conf/a.txt", "conf/b.txt", "/abs/c.txt"]);

  const fromFile = combineConfig(config, {});
  assert.equal(fromFile.iface, "127.0.0.1");
  assert.equal(fromFile.writeTimeout, 5);
  assert.deepEqual(fromFile.faults, ["jitter=0.05"]);
  assert.deepEqual(fromFile.listeners!.map((l) => l.pace), [
    { numBytes: 10, delay: 0.1 },
    { numBytes: 3, delay: 0.1 }, // num-bytes alone keeps the top level's delay
    { numBytes: 10, delay: 0 },
  ]);
  assert.deepEqual(fromFile.listeners![1].faults, [], "[] means none, not the default");
  assert.equal(fromFile.listeners![1].iface, "::1");
  assert.equal(fromFile.listeners![2].maxConnections, 2);

  const withCli = combineConfig(config, {
    iface: "localhost",
    pace: { numBytes: 20, delay: 0.5 },
    faults: ["refuse"],
    writeTimeout: 1,
  });
  assert.equal(withCli.iface, "localhost");
  assert.equal(withCli.writeTimeout, 1);
  assert.deepEqual(withCli.faults, ["refuse"]);
  assert.deepEqual(withCli.listeners!.map((l) => l.pace), [
    { numBytes: 20, delay: 0.5 },
    { numBytes: 3, delay: 0.5 },
    { numBytes: 20, delay: 0 },
  ]);
  assert.equal(withCli.listeners![1].iface, "::1", "a listener's own address wins");
  assert.throws(() => combineConfig(config, { port: 1 }), /--port does not combine with --config/);
});

Deno.test("config: a listener's name (the control endpoint's for it) is a path segment, one per listener", async () => {
  const named = await parseConfig(
    '{ "listeners": [{ "poem": "a.txt", "name": "ode" }] }',
    "p.jsonc",
  );
  assert.equal(named.listeners[0].name, "ode");
  await assert.rejects(
    parseConfig(
      '{ "listeners": [{ "poem": "a", "name": "x" }, { "poem": "b", "name": "x" }] }',
      "p.jsonc",
    ),
    /p\.jsonc: two listeners are named x/,
  );
  await assert.rejects(
    parseConfig('{ "listeners": [{ "poem": "a", "name": "a/b" }] }', "p.jsonc"),
    /listeners\[0\]\.name must be 1 to 64 letters/,
  );
});
