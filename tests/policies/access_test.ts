import assert from "node:assert/strict";
import { AccessList, parseCidr } from "../../lib/policies/access.ts";

Deno.test("access: CIDR text is parsed for IPv4 and IPv6, and nonsense is refused", () => {
  assert.deepEqual(parseCidr("10.0.0.0/8"), { address: "10.0.0.0", prefix: 8, family: "ipv4" });
  assert.deepEqual(parseCidr("::1"), { address: "::1", prefix: 128, family: "ipv6" });
  assert.deepEqual(parseCidr("fe80::/10"), { address: "fe80::", prefix: 10, family: "ipv6" });
  for (
    const bad of [
      "",
      "10.0.0.0/33",
      "::/129",
      "300.0.0.1",
      "10.0.0.0/",
      "host.example",
      "1.2.3.4/8/8",
      // isIP accepts zone ids, but BlockList, which matches clients, does not.
      "fe80::1%lo",
      "fe80::1%eth0/64",
    ]
  ) {
    assert.equal(parseCidr(bad), undefined, bad);
  }
});

Deno.test("access: no lists serves everyone", () => {
  const access = new AccessList();
  assert.equal(access.open, true);
  assert.equal(access.permits("203.0.113.9"), true);
});

Deno.test("access: deny wins over allow; with any allow, the rest is denied", () => {
  const access = new AccessList({ allow: ["127.0.0.0/8", "::1"], deny: ["127.0.0.2"] });
  assert.equal(access.permits("127.0.0.1"), true);
  assert.equal(access.permits("127.0.0.2"), false);
  assert.equal(access.permits("::1"), true);
  assert.equal(access.permits("::2"), false);
  assert.equal(access.permits("192.0.2.1"), false);
});

Deno.test("access: an IPv4-mapped IPv6 peer matches IPv4 blocks", () => {
  const access = new AccessList({ deny: ["127.0.0.0/8"] });
  assert.equal(access.permits("::ffff:127.0.0.1"), false);
  assert.equal(access.permits("::ffff:192.0.2.1"), true);
});

Deno.test("access: every block parseCidr accepts builds an AccessList", () => {
  for (const text of ["10.0.0.0/8", "::1", "fe80::/10", "::ffff:127.0.0.1", "FE80::1/64"]) {
    assert.ok(parseCidr(text), text);
    new AccessList({ allow: [text], deny: [text] });
  }
});
