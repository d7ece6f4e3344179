// The control endpoint's checks that need no HTTP: which peers it answers
// (no test can be a peer off loopback over TCP, so the API is called with one)
// and where a proxy may listen.

import assert from "node:assert/strict";
import { isLoopback, parseListen } from "../../lib/control/addresses.ts";
import { ApiError } from "../../lib/control/api_error.ts";
import { ControlApi } from "../../lib/control/control.ts";
import { ProxyCollection } from "../../lib/control/proxies.ts";
import { serve } from "../../lib/server/server.ts";

Deno.test("control addresses: loopback peers, and where a proxy may listen", () => {
  for (const host of ["127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "::ffff:127.0.0.1"]) {
    assert.ok(isLoopback(host), host);
  }
  for (const host of ["10.0.0.1", "192.0.2.1", "::", "0.0.0.0", "::ffff:10.0.0.1", "128.0.0.1"]) {
    assert.ok(!isLoopback(host), host);
  }
  assert.deepEqual(parseListen(":0", "127.0.0.1"), { hostname: "127.0.0.1", port: 0 });
  assert.deepEqual(parseListen("localhost:8000", "127.0.0.1"), {
    hostname: "localhost",
    port: 8000,
  });
  assert.deepEqual(parseListen("[::1]:9", "localhost"), { hostname: "::1", port: 9 });
  assert.deepEqual(parseListen("10.1.2.3:9", "10.1.2.3"), { hostname: "10.1.2.3", port: 9 });
  for (const listen of ["0.0.0.0:9", "example.com:9", "127.0.0.1", "127.0.0.1:65536", "[::]:9"]) {
    assert.throws(() => parseListen(listen, "localhost"), ApiError, listen);
  }
});

Deno.test("control api: a peer off loopback is refused with a 403 unless --control-allow-remote", async () => {
  const server = await serve(["poems/a-short-one.txt"], { iface: "127.0.0.1", resettable: true });
  try {
    const proxies = new ProxyCollection(server, "127.0.0.1");
    const remote = { transport: "tcp" as const, hostname: "192.0.2.1", port: 40000 };
    const local = { transport: "tcp" as const, hostname: "127.0.0.1", port: 40000 };
    const get = () => new Request("http://127.0.0.1/proxies");
    const refused = await new ControlApi(server, proxies, false).respond(get(), remote);
    assert.equal(refused.status, 403);
    assert.match((await refused.json()).error, /loopback clients only/);
    assert.equal((await new ControlApi(server, proxies, false).respond(get(), local)).status, 200);
    assert.equal((await new ControlApi(server, proxies, true).respond(get(), remote)).status, 200);
  } finally {
    await server.shutdown(0);
  }
});
