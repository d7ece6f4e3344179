import assert from "node:assert/strict";
import { parseCommandLine } from "../../cli/options.ts";
import { UsageError } from "../../lib/base/errors.ts";

Deno.test("options: defaults are fast mode on any free port, info text logs", () => {
  const cli = parseCommandLine(["poem.txt"]);
  assert.deepEqual(cli.poems, ["poem.txt"]);
  assert.equal(cli.serve.port, undefined);
  assert.equal(cli.serve.pace, undefined);
  assert.equal(cli.logLevel, "info");
  assert.equal(cli.logFormat, "text");
});

Deno.test("options: every option is read, in either --opt value or --opt=value form", () => {
  const cli = parseCommandLine([
    "--port=10000",
    "--iface",
    "::1",
    "--num-bytes",
    "30",
    "--delay",
    ".25",
    "--max-connections",
    "5",
    "--write-timeout",
    "2",
    "--drain-timeout=0",
    "--allow",
    "127.0.0.0/8",
    "--allow",
    "::1",
    "--deny",
    "127.0.0.2",
    "--log-level",
    "debug",
    "--log-format",
    "json",
    "--watch",
    "a.txt",
    "dir/",
  ]);
  assert.deepEqual(cli.poems, ["a.txt", "dir/"]);
  assert.deepEqual(cli.serve, {
    port: 10000,
    iface: "::1",
    pace: { numBytes: 30, delay: 0.25 },
    maxConnections: 5,
    writeTimeout: 2,
    drainTimeout: 0,
    allow: ["127.0.0.0/8", "::1"],
    deny: ["127.0.0.2"],
  });
  assert.equal(cli.logLevel, "debug");
  assert.equal(cli.logFormat, "json");
  assert.equal(cli.watch, true);
});

Deno.test("options: --delay alone means --num-bytes 10; --num-bytes alone is bad input", () => {
  assert.deepEqual(parseCommandLine(["--delay", "0.5", "p"]).serve.pace, {
    numBytes: 10,
    delay: 0.5,
  });
  assert.throws(() => parseCommandLine(["--num-bytes", "3", "p"]), /--num-bytes 3 needs --delay/);
  assert.deepEqual(parseCommandLine(["--num-bytes", "3", "--delay", "0", "p"]).serve.pace, {
    numBytes: 3,
    delay: 0,
  });
  // With --config too: the command line's pace replaces the file's top level whole.
  assert.throws(() => parseCommandLine(["--num-bytes", "3", "--config", "c.jsonc"]), /--delay/);
});

Deno.test("options: an IPv6 zone id is refused with a hint that says so", () => {
  for (const name of ["--allow", "--deny"]) {
    assert.throws(() => parseCommandLine([name, "fe80::1%lo", "p"]), (err: unknown) => {
      assert.ok(err instanceof UsageError);
      assert.match(
        err.message,
        new RegExp(`${name} needs an address or CIDR block, got 'fe80::1%lo'`),
      );
      assert.match(err.hint ?? "", /zone ids like %lo are not supported/);
      return true;
    });
  }
});

Deno.test("options: --help and --version need no poem", () => {
  assert.equal(parseCommandLine(["--help"]).help, true);
  assert.equal(parseCommandLine(["-V"]).version, true);
});

Deno.test("options: bad values are usage errors naming the option and the value", () => {
  const bad: [string[], RegExp][] = [
    [[], /no poem given/],
    [["--port", "65536", "p"], /--port .* got '65536'/],
    [["--port", "1e3", "p"], /--port .* got '1e3'/],
    [["--port", "-5", "p"], /--port .* got '-5'/],
    [["--delay", "-0.1", "p"], /--delay .* got '-0.1'/],
    [["--delay", "1.2.3", "p"], /--delay .* got '1.2.3'/],
    [["--delay", "Infinity", "p"], /--delay/],
    [["--num-bytes", "0", "p"], /--num-bytes .* got '0'/],
    [["--num-bytes", "2.5", "p"], /--num-bytes .* got '2.5'/],
    [["--max-connections", "0", "p"], /--max-connections/],
    [["--log-format", "xml", "p"], /--log-format must be one of text, json/],
    [["--deny", "300.1.1.1", "p"], /--deny needs an address or CIDR block/],
    [["--iface", "", "p"], /--iface is empty/],
    [["-x", "p"], /unknown option -x/],
    [["--watch=yes", "p"], /--watch does not take a value/],
  ];
  for (const [args, message] of bad) {
    assert.throws(() => parseCommandLine(args), (err: unknown) => {
      assert.ok(err instanceof UsageError, `${args.join(" ")} gave ${err}`);
      assert.match(err.message, message);
      assert.equal(err.exitCode, 2);
      return true;
    });
  }
});

Deno.test("options: --proxy-protocol is off unless given, and takes no value", () => {
  assert.equal(parseCommandLine(["poem.txt"]).serve.proxyProtocol, undefined);
  assert.equal(parseCommandLine(["--proxy-protocol", "poem.txt"]).serve.proxyProtocol, true);
  assert.throws(
    () => parseCommandLine(["--proxy-protocol=v2", "poem.txt"]),
    (err: unknown) =>
      err instanceof UsageError && /--proxy-protocol does not take a value/.test(err.message),
  );
});

Deno.test("options: --control is off unless given; on loopback, or off it with --control-allow-remote; never with --workers", () => {
  assert.equal(parseCommandLine(["p"]).control, undefined);
  assert.equal(parseCommandLine(["p"]).serve.resettable, undefined);
  const cli = parseCommandLine(["--control", "127.0.0.1:8474", "p"]);
  assert.deepEqual(cli.control, { hostname: "127.0.0.1", port: 8474, allowRemote: false });
  // A toxic added at run time may reset: every listener must be able to.
  assert.equal(cli.serve.resettable, true);
  assert.deepEqual(parseCommandLine(["--control=[::1]:0", "p"]).control, {
    hostname: "::1",
    port: 0,
    allowRemote: false,
  });
  assert.equal(parseCommandLine(["--control", "localhost:0", "p"]).control?.hostname, "localhost");
  assert.deepEqual(
    parseCommandLine(["--control", "0.0.0.0:8474", "--control-allow-remote", "p"]).control,
    { hostname: "0.0.0.0", port: 8474, allowRemote: true },
  );
  const bad: [string[], RegExp][] = [
    [["--control", "0.0.0.0:8474", "p"], /--control 0\.0\.0\.0:8474 is off loopback/],
    [["--control", "8474", "p"], /--control needs HOST:PORT, got '8474'/],
    [["--control-allow-remote", "p"], /--control-allow-remote needs --control/],
    [["--control", "127.0.0.1:0", "--workers", "2", "p"], /--control does not work with --workers/],
  ];
  for (const [args, message] of bad) {
    if (args.includes("--workers") && Deno.build.os !== "linux") continue;
    assert.throws(() => parseCommandLine(args), (err: unknown) => {
      assert.ok(err instanceof UsageError, `${args.join(" ")} gave ${err}`);
      assert.match(err.message, message);
      assert.equal(err.exitCode, 2);
      return true;
    });
  }
});

Deno.test("options: --help lists every fault of the table, in its order, within 80 columns", async () => {
  const { USAGE } = await import("../../cli/options.ts");
  const { FAULTS } = await import("../../lib/fixture/fault_spec.ts");
  let at = 0;
  for (const { usage } of FAULTS) {
    const found = USAGE.indexOf(`  ${usage}`, at);
    assert.ok(found > at, `${usage} in --help, after the one before`);
    at = found;
  }
  const section = USAGE.slice(USAGE.indexOf("--fault SPEC"), USAGE.indexOf("--seed N"));
  for (const line of section.split("\n")) assert.ok(line.length <= 80, line);
});
