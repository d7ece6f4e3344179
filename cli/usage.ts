/**
 * The text of `poetry --help`; the faults' lines come from the table that
 * drives their parser.
 *
 * @module
 */

import { FAULTS } from "../lib/fixture/fault_spec.ts";

/**
 * The faults' lines of `--help`, from the table that drives the parser: each
 * spec, then what it does wrapped to 80 columns. Wrapped by hand: neither
 * Deno nor node: has a word wrap, and the text is ours and short.
 */
function faultLines(): string {
  const [indent, column, width] = [26, 47, 80];
  const lines: string[] = [];
  for (const { usage, help } of FAULTS) {
    let line = " ".repeat(indent) + usage;
    if (line.length >= column - 1 && help) {
      lines.push(line);
      line = "";
    }
    for (const word of help.split(" ").filter(Boolean)) {
      if (line.length <= column - 1) line = line.padEnd(column) + word;
      else if (line.length + 1 + word.length <= width) line += ` ${word}`;
      else {
        lines.push(line);
        line = " ".repeat(column) + word;
      }
    }
    lines.push(line);
  }
  return lines.join("\n");
}

/**
 * Usage text for `--help`.
 *
 * @example
 * ```ts
 * import { USAGE } from "./usage.ts";
 * console.log(USAGE);
 * ```
 */
export const USAGE = `poetry: serve poems over TCP, fast or slow.

Usage:
  poetry [options] POEM...

  POEM is a file, or a directory (every regular file in it, by name).
  Each poem gets its own listener: the first on --port, the next on
  --port + 1, and so on. A client connects, gets the poem, and is closed.

Options:
  --port N              port of the first listener (default: 0, any free port)
  --iface HOST          address to listen on (default: localhost)
  --num-bytes N         slow mode: bytes per write; needs --delay (default: 10)
  --delay SECONDS       slow mode: pause between writes; 0 is fast mode
                        (default: 0)
  --max-connections N   accept at most N clients at once (default: no limit)
  --write-timeout SECS  drop a client that takes no bytes for this long;
                        0 disables (default: 30)
  --drain-timeout SECS  on SIGINT/SIGTERM, let transfers finish this long
                        (default: 10)
  --allow CIDR          serve only these clients (repeatable)
  --deny CIDR           never serve these clients (repeatable; wins over --allow)
  --proxy-protocol      every connection starts with a PROXY protocol header
                        (v1 or v2) from a load balancer; its client is the one
                        --allow/--deny and the logs see (default: off)
  --watch               re-read a poem when its file changes (SIGHUP always does)
  --samples             also serve the sample poems shipped with the program
  --admin HOST:PORT     serve /metrics (Prometheus), /healthz, /status.json
                        and a live status page at / (default: off)
  --admin-name NAME     a host name the admin endpoint answers to besides its
                        address, IP literals and localhost (repeatable)
  --stats-interval SECS write a stats record to the log this often; 0 is off
                        (default: 0; SIGUSR2 writes one at any time)
  --log-level LEVEL     debug, info, warning or error (default: info)
  --log-format FORMAT   text or json, one record per line (default: text)
  --workers N           serve with N threads, each accepting on every port
                        (Linux; auto: one per core; default: 1); exits 1 if
                        the open-file limit (ulimit -n) cannot hold them

Testing clients (faults on purpose; see the README, "Testing your client"):
  --fault SPEC          misbehave on purpose (repeatable); SPEC is
                        NAME=VALUE[,probability=P] or refuse[,probability=P]:
${faultLines()}
  --seed N              make every random choice of the faults repeatable
                        (default: random, logged)
  --control HOST:PORT   add and remove faults at run time through Toxiproxy's
                        HTTP API (e.g. 127.0.0.1:8474; see docs/control.md);
                        loopback clients only (default: off; not with --workers)
  --control-allow-remote
                        let the control endpoint listen on and answer
                        addresses off loopback (anyone who reaches it can
                        open listeners and fault every client)
  --config FILE         listeners with their own poem, port, pace, faults,
                        allow/deny and cap, from a JSON-with-comments file
                        (see examples/poetry.jsonc); no POEM arguments then
  --ports-file PATH     once every listener is up, write their addresses as
                        JSON ([{"poem", "host", "port", "listener", "faults"}])
                        to PATH, atomically; removed at exit. Needs
                        --allow-write and --allow-read on PATH's directory

  -h, --help            show this help
  -V, --version         show the version

Examples:
  poetry poems/                                 every poem, fast, any free ports
  poetry --port 10000 poems/                    ports 10000, 10001, ...
  poetry --port 10000 --num-bytes 30 --delay 0.5 poems/ode-to-the-socket.txt
  poetry --iface ::1 --port 10000 poems/
  poetry --samples                              the bundled poems (a release binary too)
  poetry --admin 127.0.0.1:9100 poems/          metrics and a status page on port 9100
  poetry --fault reset-after=100,probability=0.3 --seed 7 poems/a-short-one.txt
  poetry --config examples/poetry.jsonc --ports-file /tmp/ports.json
                                                (installed with --allow-write=/tmp)

Exit codes: 0 ok, 1 failure at run time (port in use, open-file limit too low
for --workers, ...), 2 bad input.
`;
