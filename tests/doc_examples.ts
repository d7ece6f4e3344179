/**
 * The shell examples of README.md and docs/*.md that are marked to run, and
 * the fixed ports they name, for the tests that run them as written
 * (tests/integration/docs_examples_test.ts, tests/faults/haproxy_test.ts).
 *
 * A fenced `sh` block runs when an HTML comment right before it says so:
 * `<!-- run -->`, or `<!-- run: OPTION, ... -->` with these options:
 * - `node-only`: `deno` is not on PATH (the README's Quickstart);
 * - `background`: every command keeps running, like a server in another
 *   terminal (a line ending in `&` is one in any block);
 * - `needs PROGRAM`: skipped, saying so, where PROGRAM is not installed.
 *
 * A fence without a language right after such a block is the output it
 * shows: each of its lines must be a line the block printed (in any order:
 * tasks that run at once finish in any order), with times (`0.01s`, `3 ms`)
 * free.
 *
 * @module
 */

import { ROOT } from "./helpers.ts";

/** One runnable `sh` block. */
export interface DocBlock {
  /** README.md or docs/x.md. */
  file: string;
  /** The heading the block is under. */
  section: string;
  /** Line of the fence's first line, 1-based. */
  line: number;
  /** The commands, a line each (continued lines joined). */
  commands: string[];
  /** `deno` off PATH. */
  nodeOnly: boolean;
  /** Every command runs in the background. */
  background: boolean;
  /** Programs the block needs. */
  needs: string[];
  /** The output the page shows after it, if any. */
  output?: string;
}

const MARK = /^<!--\s*run(?::\s*(.*?))?\s*-->\s*$/;

/** The runnable blocks of one page, in order. */
export function runnableBlocks(file: string, text: string): DocBlock[] {
  const lines = text.split("\n");
  const blocks: DocBlock[] = [];
  let section = "";
  for (let i = 0; i < lines.length; i++) {
    const fence = /^(`{3,})(\S*)/.exec(lines[i]);
    if (fence) {
      // Skip to the closing fence: nothing inside is a heading or a mark.
      i = closing(lines, i, fence[1]);
      continue;
    }
    const heading = /^#{1,6}\s+(.*)$/.exec(lines[i]);
    if (heading) section = heading[1].trim();
    const mark = MARK.exec(lines[i]);
    if (!mark) continue;
    const options = (mark[1] ?? "").split(",").map((o) => o.trim()).filter(Boolean);
    let at = i + 1;
    while (lines[at]?.trim() === "") at++;
    if (lines[at] !== "```sh") {
      throw new Error(`${file}:${i + 1}: a run mark must come right before a \`\`\`sh block`);
    }
    const end = closing(lines, at, "```");
    const commands = lines.slice(at + 1, end).join("\n").replace(/\\\n\s*/g, "")
      .split("\n").filter((line) => line.trim() && !line.trimStart().startsWith("#"));
    let next = end + 1;
    while (lines[next]?.trim() === "") next++;
    let output: string | undefined;
    if (lines[next] === "```") {
      const outputEnd = closing(lines, next, "```");
      output = lines.slice(next + 1, outputEnd).join("\n");
    }
    for (const option of options) {
      if (!/^(node-only|background|needs \S+)$/.test(option)) {
        throw new Error(`${file}:${i + 1}: unknown run option '${option}'`);
      }
    }
    blocks.push({
      file,
      section,
      line: at + 1,
      commands,
      nodeOnly: options.includes("node-only"),
      background: options.includes("background"),
      needs: options.flatMap((o) => o.startsWith("needs ") ? [o.slice(6)] : []),
      output,
    });
    i = end;
  }
  return blocks;
}

function closing(lines: string[], open: number, fence: string): number {
  for (let i = open + 1; i < lines.length; i++) {
    if (lines[i].startsWith(fence) && lines[i].trim() === fence) return i;
  }
  throw new Error(`unclosed fence at line ${open + 1}`);
}

/** README.md and every page of docs/, relative to the repository root. */
export function documentPaths(): string[] {
  const pages = [...Deno.readDirSync(`${ROOT}/docs`)]
    .filter((e) => e.isFile && e.name.endsWith(".md"))
    .map((e) => `docs/${e.name}`)
    .sort();
  return ["README.md", ...pages];
}

/** Every runnable block of README.md and docs/*.md. */
export function allRunnableBlocks(): DocBlock[] {
  return documentPaths().flatMap((file) =>
    runnableBlocks(file, Deno.readTextFileSync(`${ROOT}/${file}`))
  );
}

/**
 * The fixed ports the docs use: 10000 to 10009 (poems) and 9100 to 9109
 * (admin endpoints). A port there is a word of its own: `:10000`,
 * `--port 10000`, `port 9101`, not part of `2.9.6` or `100000`.
 */
const FIXED_PORT = /(?<![\w.])(1000\d|910\d)(?!\w|\.\d)/g;

/**
 * Free ports for the fixed ones, each run kept in order (10000 + i becomes
 * `first + i`), so that what is consecutive in the docs stays consecutive:
 * a directory's poems on the ports after `--port` collide here as they would
 * there.
 */
export function freePortsFor(first: number): Map<number, number> {
  const map = new Map<number, number>();
  for (let i = 0; i < 10; i++) {
    map.set(10000 + i, first + i);
    map.set(9100 + i, first + 10 + i);
  }
  return map;
}

/** `text` with every fixed port replaced by its free one. */
export function withPorts(text: string, ports: Map<number, number>): string {
  return text.replace(FIXED_PORT, (port) => String(ports.get(Number(port)) ?? port));
}

/** The fixed ports `text` names. */
export function fixedPorts(text: string): number[] {
  return [...new Set([...text.matchAll(FIXED_PORT)].map((m) => Number(m[1])))];
}
