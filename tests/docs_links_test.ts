// Every relative link in README.md and docs/*.md leads somewhere: to a file
// of the repository and, with a #fragment, to a heading of that file.

import assert from "node:assert/strict";
import { dirname, join, relative } from "node:path";
import { ROOT } from "./helpers.ts";

/** A link that leads nowhere, and why. */
interface BrokenLink {
  file: string;
  link: string;
  reason: string;
}

/** GitHub's pages of a repository, which a top-level file reaches as `../../releases`. */
const GITHUB_PAGE = /^\.\.\/\.\.\/(releases|issues|pulls|actions|wiki)(\/|$)/;

/** The text without fenced code blocks and inline code, where `[x](y)` and `# x` are not markup. */
function prose(markdown: string): string {
  return markdown
    .replace(/^ {0,3}(`{3,}|~{3,})[^\n]*\n[\s\S]*?^ {0,3}\1[^\n]*$/gm, "")
    .replace(/(`+)[\s\S]*?\1/g, "code");
}

/** GitHub's anchor for a heading: lower case, spaces to '-', punctuation but '-' and '_' dropped. */
function slug(heading: string): string {
  return heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1") // a link's text
    .replace(/[`*]/g, "") // code and emphasis marks
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\p{M} _-]/gu, "")
    .replace(/ /g, "-");
}

/** The anchors of a file's headings; a repeated heading gets `-1`, `-2`, ... as on GitHub. */
function anchors(markdown: string): Set<string> {
  const found = new Set<string>();
  const seen = new Map<string, number>();
  const withoutFences = markdown.replace(
    /^ {0,3}(`{3,}|~{3,})[^\n]*\n[\s\S]*?^ {0,3}\1[^\n]*$/gm,
    "",
  );
  for (const [, text] of withoutFences.matchAll(/^ {0,3}#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$/gm)) {
    const base = slug(text);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    found.add(n === 0 ? base : `${base}-${n}`);
  }
  return found;
}

/** The targets of inline links and images, and of reference definitions. */
function links(markdown: string): string[] {
  const text = prose(markdown);
  const inline = [...text.matchAll(/\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]);
  const defined = [...text.matchAll(/^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm)].map((m) => m[1]);
  return [...inline, ...defined];
}

/** Every relative link of `files` (paths under `root`) that leads to no file or no heading. */
async function brokenLinks(root: string, files: string[]): Promise<BrokenLink[]> {
  const broken: BrokenLink[] = [];
  for (const file of files) {
    const markdown = await Deno.readTextFile(join(root, file));
    for (const link of links(markdown)) {
      if (link === "" || /^[a-z][a-z0-9+.-]*:/i.test(link) || link.startsWith("//")) continue;
      const hash = link.indexOf("#");
      const path = decodeURIComponent(hash < 0 ? link : link.slice(0, hash));
      const fragment = hash < 0 ? undefined : decodeURIComponent(link.slice(hash + 1));
      const target = path === "" ? join(root, file) : join(root, dirname(file), path);
      if (relative(root, target).startsWith("..")) {
        if (dirname(file) === "." && GITHUB_PAGE.test(path)) continue;
        broken.push({ file, link, reason: "leaves the repository" });
        continue;
      }
      let info;
      try {
        info = await Deno.stat(target);
      } catch {
        broken.push({ file, link, reason: "no such file" });
        continue;
      }
      if (fragment === undefined) continue;
      if (!info.isFile || !target.endsWith(".md")) {
        broken.push({ file, link, reason: "an anchor in a file that is not Markdown" });
      } else if (!anchors(await Deno.readTextFile(target)).has(fragment)) {
        broken.push({ file, link, reason: `no heading #${fragment}` });
      }
    }
  }
  return broken;
}

/** README.md and every Markdown page of docs/. */
function documents(root: string): string[] {
  const pages = [...Deno.readDirSync(join(root, "docs"))]
    .filter((e) => e.isFile && e.name.endsWith(".md"))
    .map((e) => `docs/${e.name}`)
    .sort();
  return ["README.md", ...pages];
}

Deno.test("docs links: every relative link in README.md and docs/*.md resolves", async () => {
  const files = documents(ROOT);
  assert.ok(files.length > 1, `no docs/*.md found beside README.md: ${files}`);
  assert.deepEqual(await brokenLinks(ROOT, files), []);
});

Deno.test("docs links: anchors follow GitHub's slugs", () => {
  assert.equal(slug("Several cores: `--workers N`"), "several-cores---workers-n");
  assert.equal(
    slug("Behind a load balancer: `--proxy-protocol`"),
    "behind-a-load-balancer---proxy-protocol",
  );
  assert.equal(slug("The client's progress"), "the-clients-progress");
  assert.equal(slug("What the endpoint guarantees"), "what-the-endpoint-guarantees");
  assert.equal(slug("log_format and [links](x.md)"), "log_format-and-links");
});

Deno.test("docs links: the check finds a missing file, a missing heading, a link out of the repository", async () => {
  const root = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(root, "docs"));
    await Deno.writeTextFile(join(root, "docs", "a.md"), "# A\n\n## Two words\n\n## Two words\n");
    await Deno.writeTextFile(
      join(root, "README.md"),
      [
        "[ok](docs/a.md) [ok](docs/a.md#two-words) [ok](docs/a.md#two-words-1) [ok](#here)",
        "[ok](https://example.com/x.md) [ok](../../releases) `[in code](nowhere.md)`",
        "```sh\n[in a block](nowhere.md)\n# not a heading\n```",
        "## Here",
        "[gone](docs/b.md) [no heading](docs/a.md#three-words) [no heading](#not-a-heading)",
        "[out](../elsewhere.md) [dup](docs/a.md#two-words-2)",
      ].join("\n\n"),
    );
    const broken = await brokenLinks(root, documents(root));
    assert.deepEqual(broken.map((b) => `${b.file} ${b.link}: ${b.reason}`), [
      "README.md docs/b.md: no such file",
      "README.md docs/a.md#three-words: no heading #three-words",
      "README.md #not-a-heading: no heading #not-a-heading",
      "README.md ../elsewhere.md: leaves the repository",
      "README.md docs/a.md#two-words-2: no heading #two-words-2",
    ]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
