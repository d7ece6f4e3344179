/**
 * The container's health probe: exits 0 when poetry's admin endpoint says
 * `/healthz` is ok, 1 otherwise (draining, down, or no answer within 2 s).
 * The image has no shell, curl or wget; Deno is there, and this runs with
 * nothing but `--allow-net` for the one address it asks.
 *
 *   deno run --allow-net=127.0.0.1:9100 deploy/healthcheck.ts http://127.0.0.1:9100/healthz
 *
 * @module
 */

const url = Deno.args[0] ?? "http://127.0.0.1:9100/healthz";
try {
  const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
  await response.body?.cancel();
  if (!response.ok) console.error(`${url}: ${response.status}`);
  Deno.exit(response.ok ? 0 : 1);
} catch (err) {
  console.error(`${url}: ${err instanceof Error ? err.message : err}`);
  Deno.exit(1);
}
