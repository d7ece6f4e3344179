/**
 * The container's health probe. It reads the server's own command line
 * (`/proc/PID/cmdline`, PID 1 in a container: the ENTRYPOINT, or the
 * `--init` process whose command line holds it) and asks `/healthz` on the
 * address its `--admin` names, so a CMD with another admin port is checked
 * there. Exits 0 when `/healthz` says ok; 1 when it does not (draining, down,
 * no answer within 2 s) or the server is gone. A server without `--admin`
 * (or with port 0) has no endpoint to ask: the probe says so and exits 0,
 * healthy while the container runs, as it would be without a HEALTHCHECK.
 * The image has no shell, curl or wget; Deno is there. It needs
 * `--allow-all`: Deno 2.9.6 lets a program read `/proc/PID/cmdline` only
 * with it, whatever `--allow-read` names.
 *
 *   deno run --allow-all deploy/healthcheck.ts 1
 *
 * @module
 */

const pid = Deno.args[0] ?? "1";

/** The `--admin` value of a command line (the last one wins, as for the server). */
export function adminOption(argv: string[]): string | undefined {
  let admin: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--") break;
    if (argv[i] === "--admin") admin = argv[++i];
    else if (argv[i].startsWith("--admin=")) admin = argv[i].slice("--admin=".length);
  }
  return admin;
}

/** Where to ask for HOST:PORT: a wildcard address is asked on loopback. */
export function healthUrl(admin: string): string | undefined {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(admin);
  if (!match || Number(match[3]) === 0) return undefined;
  let host = match[1] ?? match[2];
  if (host === "0.0.0.0") host = "127.0.0.1";
  if (host === "::") host = "::1";
  return `http://${host.includes(":") ? `[${host}]` : host}:${match[3]}/healthz`;
}

if (import.meta.main) {
  let argv: string[];
  try {
    argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
  } catch (err) {
    console.error(`the server (pid ${pid}) is gone: ${err instanceof Error ? err.message : err}`);
    Deno.exit(1);
  }
  const admin = adminOption(argv);
  const url = admin === undefined ? undefined : healthUrl(admin);
  if (url === undefined) {
    console.log(
      `no admin endpoint to ask (--admin ${admin ?? "not given"}): healthy while running`,
    );
    Deno.exit(0);
  }
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await response.body?.cancel();
    if (!response.ok) console.error(`${url}: ${response.status}`);
    Deno.exit(response.ok ? 0 : 1);
  } catch (err) {
    console.error(`${url}: ${err instanceof Error ? err.message : err}`);
    Deno.exit(1);
  }
}
