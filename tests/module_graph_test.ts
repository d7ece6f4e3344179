// The design stays visible (issue 17): no import cycles, type imports
// included, and every import points down the layers of lib/ (see
// docs/design.md). Built from `deno info --json` of every entry point.

import assert from "node:assert/strict";
import { ROOT } from "./helpers.ts";

/** Bottom to top; a module may import its own folder and the layers below. */
const LAYERS: [prefix: string, layer: number][] = [
  ["deno.json", 0],
  ["lib/base/", 0],
  ["lib/core/", 1],
  ["lib/client.ts", 1],
  ["lib/policies/", 2],
  ["lib/fixture/", 2],
  ["lib/server/", 3],
  ["lib/observe/", 4],
  ["lib/service/", 5],
  ["lib/control/", 5],
  ["lib/scale/", 6],
  ["lib/mod.ts", 7],
  ["cli/", 7],
  ["main.ts", 8],
];
const ENTRY_POINTS = ["main.ts", "lib/mod.ts", "lib/scale/worker_main.ts", "cli/get.ts"];

type Graph = Map<string, Set<string>>;

async function moduleGraph(entry: string): Promise<Graph> {
  const { stdout, code } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: ROOT,
    stderr: "inherit",
  }).output();
  assert.equal(code, 0, `deno info ${entry}`);
  const root = new URL(`file://${ROOT.endsWith("/") ? ROOT : `${ROOT}/`}`).href;
  const local = (specifier?: string) =>
    specifier?.startsWith(root) ? specifier.slice(root.length) : undefined;
  const graph: Graph = new Map();
  const info = JSON.parse(new TextDecoder().decode(stdout));
  for (const module of info.modules) {
    const from = local(module.specifier);
    if (!from) continue;
    const to = new Set<string>();
    for (const dependency of module.dependencies ?? []) {
      for (const kind of ["code", "type"]) {
        const target = local(dependency[kind]?.specifier);
        if (target) to.add(target);
      }
    }
    graph.set(from, to);
  }
  return graph;
}

/** Every cycle found by a depth-first walk, each as a path that ends where it starts. */
export function cycles(graph: Graph): string[][] {
  const found: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const walk = (module: string, path: string[]) => {
    state.set(module, "open");
    for (const next of [...(graph.get(module) ?? [])].sort()) {
      if (state.get(next) === "open") found.push([...path.slice(path.indexOf(next)), next]);
      else if (!state.has(next)) walk(next, [...path, next]);
    }
    state.set(module, "done");
  };
  for (const module of [...graph.keys()].sort()) if (!state.has(module)) walk(module, [module]);
  return found;
}

function layerOf(module: string): { prefix: string; layer: number } {
  const match = LAYERS.find(([prefix]) => module === prefix || module.startsWith(prefix));
  assert.ok(match, `${module} is in no layer: add its folder to LAYERS and docs/design.md`);
  return { prefix: match[0], layer: match[1] };
}

/** Imports that point up, or sideways into another folder of the same layer. */
export function upwardImports(graph: Graph): string[] {
  const wrong: string[] = [];
  for (const [from, targets] of graph) {
    const a = layerOf(from);
    for (const to of targets) {
      const b = layerOf(to);
      if (b.layer > a.layer || (b.layer === a.layer && b.prefix !== a.prefix && b.layer > 0)) {
        wrong.push(`${from} -> ${to}`);
      }
    }
  }
  return wrong.sort();
}

const graphs = await Promise.all(ENTRY_POINTS.map(moduleGraph));

Deno.test("module graph: no import cycles, type imports included", () => {
  for (const [i, graph] of graphs.entries()) {
    assert.deepEqual(cycles(graph), [], `cycles in the graph of ${ENTRY_POINTS[i]}`);
  }
});

Deno.test("module graph: every import points down the layers", () => {
  for (const [i, graph] of graphs.entries()) {
    assert.deepEqual(upwardImports(graph), [], `in the graph of ${ENTRY_POINTS[i]}`);
  }
});

Deno.test("module graph: what main.ts loads on use is in its graph, and checked", () => {
  // Its dynamic import()s (issue 19): deno info lists them as dependencies,
  // so the checks above cover them, and `deno compile` embeds them.
  const main = graphs[ENTRY_POINTS.indexOf("main.ts")];
  for (
    const module of [
      "lib/service/config.ts",
      "lib/service/ports_file.ts",
      "lib/observe/metrics.ts",
      "lib/observe/admin.ts",
      "lib/scale/workers.ts",
      "lib/control/control.ts",
    ]
  ) {
    assert.ok(main.get("main.ts")?.has(module), `main.ts -> ${module}`);
    assert.ok(main.has(module), `${module} in the graph of main.ts`);
  }
});

Deno.test("module graph: the checks find a cycle and an upward import when there is one", () => {
  const graph: Graph = new Map([
    ["lib/core/sender.ts", new Set(["lib/core/listener.ts"])],
    ["lib/core/listener.ts", new Set(["lib/core/sender.ts", "lib/fixture/fault_plan.ts"])],
    ["lib/fixture/fault_plan.ts", new Set()],
  ]);
  assert.deepEqual(cycles(graph), [[
    "lib/core/listener.ts",
    "lib/core/sender.ts",
    "lib/core/listener.ts",
  ]]);
  assert.deepEqual(upwardImports(graph), ["lib/core/listener.ts -> lib/fixture/fault_plan.ts"]);
});

Deno.test("module graph: no lib file over 450 lines, and every lib folder says its job", async () => {
  for (const [prefix] of LAYERS) {
    if (!prefix.endsWith("/")) continue;
    for await (const entry of Deno.readDir(`${ROOT}/${prefix}`)) {
      if (!entry.name.endsWith(".ts")) continue;
      const text = await Deno.readTextFile(`${ROOT}/${prefix}${entry.name}`);
      const lines = text.split("\n").length;
      assert.ok(lines <= 460, `${prefix}${entry.name} has ${lines} lines`);
    }
    if (prefix.startsWith("lib/")) {
      const readme = await Deno.readTextFile(`${ROOT}/${prefix}README.md`);
      assert.match(readme, /May import:/, `${prefix}README.md says what it may import`);
    }
  }
});
