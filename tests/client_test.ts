import assert from "node:assert/strict";
import { parseAddress } from "../lib/client.ts";

Deno.test("client: PORT, HOST:PORT and [IPV6]:PORT", () => {
  assert.deepEqual(parseAddress("10000"), { hostname: "localhost", port: 10000 });
  assert.deepEqual(parseAddress("127.0.0.1:10001"), { hostname: "127.0.0.1", port: 10001 });
  assert.deepEqual(parseAddress("[::1]:10002"), { hostname: "::1", port: 10002 });
  for (const bad of ["", "0", "70000", "host:", "::1:80", "a b:1"]) {
    assert.throws(() => parseAddress(bad), TypeError, bad);
  }
});
