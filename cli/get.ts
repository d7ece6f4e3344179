/**
 * `deno task get [HOST:]PORT ...`: the tutorial's get-poetry. Fetches poems
 * from several servers at once, prints them to stdout and the progress to
 * stderr: on a terminal one line per task, redrawn in place (bytes so far,
 * elapsed, rate); otherwise, and with `--verbose`, the tutorial's own line
 * for every chunk that arrives.
 *
 * @module
 */

import { fetchPoem, parseAddress, type PoemAddress } from "../lib/client.ts";
import { closest } from "./suggest.ts";

/** How often a terminal's progress lines are redrawn. */
const REDRAW_MS = 100;

/** One task's progress, as the terminal display draws it. */
interface Task {
  where: string;
  started: number;
  got: number;
  /** The final line, once the task has ended. */
  done?: string;
}

/**
 * Progress on a terminal: one line per task, redrawn in place by moving the
 * cursor back up over them, at most every {@linkcode REDRAW_MS}.
 */
class ProgressLines {
  readonly #tasks: Task[];
  #drawn = false;
  #timer?: ReturnType<typeof setInterval>;

  constructor(tasks: Task[]) {
    this.#tasks = tasks;
    this.draw();
    this.#timer = setInterval(() => this.draw(), REDRAW_MS);
  }

  draw(): void {
    const now = performance.now();
    const lines = this.#tasks.map((task, i) => {
      if (task.done) return task.done;
      const seconds = (now - task.started) / 1000;
      const rate = seconds > 0 ? Math.round(task.got / seconds) : 0;
      return `Task ${i + 1}: ${task.got} bytes from ${task.where}, ${
        seconds.toFixed(1)
      }s, ${rate} B/s`;
    });
    // ESC[nA moves up n lines; ESC[2K clears the line before it is rewritten.
    const up = this.#drawn ? `\x1b[${lines.length}A` : "";
    this.#drawn = true;
    const text = up + lines.map((line) => `\r\x1b[2K${line}\n`).join("");
    Deno.stderr.writeSync(new TextEncoder().encode(text));
  }

  stop(): void {
    clearInterval(this.#timer);
    this.draw();
  }
}

const OPTIONS = ["--verbose", "--raw", "--help"];
const HINT = "run deno task get --help to see the options";

const USAGE =
  `usage: deno task get [--verbose] [--raw] [HOST:]PORT ...   e.g. deno task get 10000 10001
  --verbose  a line per chunk as it arrives, even on a terminal
  --raw      write the poems exactly as sent (no newline added between them)`;

async function main(args: string[]): Promise<number> {
  const flags = new Set(args.filter((arg) => arg.startsWith("-")));
  const targets = args.filter((arg) => !arg.startsWith("-"));
  if (flags.has("--help") || flags.has("-h")) {
    console.log(USAGE);
    return 0;
  }
  // What is wrong first, in one line and a hint, as the server says it.
  const unknown = [...flags].filter((flag) => !OPTIONS.includes(flag));
  if (unknown.length > 0) {
    const likely = closest(unknown[0], OPTIONS);
    console.error(`error: unknown option ${unknown[0]}`);
    console.error(`  ${likely ? `did you mean ${likely}? (${HINT})` : HINT}`);
    return 2;
  }
  if (targets.length === 0) {
    console.error("error: no server given");
    console.error(`  name a port or HOST:PORT, e.g. deno task get 10000 10001 (${HINT})`);
    return 2;
  }
  let addresses: PoemAddress[];
  try {
    addresses = targets.map(parseAddress);
  } catch (err) {
    console.error(`error: ${(err as Error).message}`);
    return 2;
  }
  const started = performance.now();
  const tasks: Task[] = addresses.map((address) => ({
    where: `${
      address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname
    }:${address.port}`,
    started,
    got: 0,
  }));
  // Redrawn lines only on a terminal: in a file or pipe they would be noise.
  const display = !flags.has("--verbose") && Deno.stderr.isTerminal()
    ? new ProgressLines(tasks)
    : undefined;
  const say = (line: string) => display ? undefined : console.error(line);
  const results = await Promise.all(addresses.map(async (address, i) => {
    const task = tasks[i];
    const name = `Task ${i + 1}`;
    try {
      const bytes = await fetchPoem(address, (n) => {
        task.got += n;
        say(`${name}: got ${n} bytes of poetry from ${task.where}`);
      });
      const seconds = ((performance.now() - task.started) / 1000).toFixed(2);
      task.done = bytes.length > 0
        ? `${name}: got ${bytes.length} bytes of poetry from ${task.where} in ${seconds}s`
        : `${name}: got no poetry from ${task.where}: the server closed without sending a byte (${seconds}s)`;
      say(task.done);
      return bytes;
    } catch (err) {
      task.done = `${name}: failed to get poetry from ${task.where}: ${(err as Error).message}`;
      say(task.done);
      return undefined;
    }
  }));
  display?.stop();
  for (const bytes of results) {
    if (!bytes) continue;
    await writeAll(bytes);
    // Poems must not run together: end each with a newline unless --raw.
    if (!flags.has("--raw") && bytes.length > 0 && bytes[bytes.length - 1] !== 0x0a) {
      await writeAll(new Uint8Array([0x0a]));
    }
  }
  const got = results.filter((bytes) => bytes !== undefined).length;
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  console.error(`Got ${got} of ${results.length} poems in ${seconds}s`);
  return got === results.length ? 0 : 1;
}

async function writeAll(bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await Deno.stdout.write(bytes.subarray(at));
}

if (import.meta.main) Deno.exit(await main(Deno.args));
