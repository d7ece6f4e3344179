/**
 * `--watch`: re-reads a poem when its file changes, following the symlinks
 * on its path.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Poem } from "../core/poem.ts";
import type { PoemListener } from "../core/listener.ts";

const log = getLogger(["poetry", "service"]);

/**
 * `node:path`, loaded when a watch starts rather than with the program: most
 * runs do not watch, and it adds a dozen Node modules to every start-up
 * (issue 19; docs/benchmark.md, "Start-up"). Not a dynamic import: the watch
 * starts synchronously (see {@linkcode watchPoems}).
 */
function nodePath(): typeof import("node:path") {
  return pathModule ??= process.getBuiltinModule("node:path") as typeof import("node:path");
}
let pathModule: typeof import("node:path") | undefined;

/** Editors write a file in several steps; re-read once they are done. */
const WATCH_SETTLE_MS = 100;

/** What a watch re-reads: a server, or a group of them that looks like one. */
export interface Watched {
  /** The listeners, whose poems are watched. */
  readonly listeners: readonly PoemListener[];
  /** Re-reads one poem. */
  reloadPoem(poem: Poem): unknown;
  /** The POEM arguments that named a directory: a file new in one is told about. */
  readonly directories?: readonly string[];
}

// Watches directories, not the poem files: watchFs follows an inode, and an
// editor that saves by renaming a new file over the poem (vim, `sed -i`,
// `mv new poem`) would leave a file watch on the old, unlinked inode, deaf from
// then on. A directory's entries are matched by path. Which entries: every one
// the poem's path goes through that, replaced, changes what the path names.
// The watch starts synchronously, before the Serving lines: a change made as
// soon as they are read must be seen.
/** Watches the poems of `server` until `stopped` settles. */
export function watchPoems(server: Watched, stopped: Promise<unknown>): void {
  const watch = new PoemWatch(server);
  if (!watch.start()) return;
  stopped.finally(() => watch.close());
}

/**
 * The directory entries that `path` goes through, resolved as the kernel
 * does: each symlink met on the way (a link to the poem, a release directory
 * `cur -> rel1`, a link inside the link's target...), then the file it names.
 * A deploy that re-points any of them, or an edit of the file, changes the
 * poem; nothing else on the path can. Each entry is its real parent directory
 * joined with its name, as a watch of that directory reports it. An entry that
 * is missing (a deploy caught between steps) ends the list: its directory is
 * watched, so its return is seen.
 */
function entriesOf(path: string): string[] {
  const windows = Deno.build.os === "windows";
  const split = (p: string) => p.split(windows ? /[\\/]+/ : "/").filter((name) => name !== "");
  const absolute = nodePath().resolve(path);
  let resolved = nodePath().parse(absolute).root;
  const rest = split(absolute.slice(resolved.length));
  const entries: string[] = [];
  // ELOOP's bound on Linux: a cycle of links must not spin for ever.
  for (let links = 0; rest.length > 0;) {
    const name = rest.shift()!;
    if (name === ".") continue;
    // `resolved` holds no symlink, so its parent is the kernel's `..` too.
    if (name === "..") {
      resolved = nodePath().dirname(resolved);
      continue;
    }
    const entry = nodePath().join(resolved, name);
    let info: Deno.FileInfo;
    try {
      info = Deno.lstatSync(entry);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) {
        entries.push(entry);
        return entries;
      }
      // --allow-read=poems forbids a look at /home: take such a directory
      // for a plain one, as the old directory-only watch did.
      if (rest.length > 0) {
        resolved = entry;
        continue;
      }
      throw err;
    }
    if (info.isSymlink && ++links <= 40) {
      entries.push(entry);
      const target = Deno.readLinkSync(entry);
      if (nodePath().isAbsolute(target)) resolved = nodePath().parse(target).root;
      rest.unshift(
        ...split(nodePath().isAbsolute(target) ? target.slice(resolved.length) : target),
      );
      continue;
    }
    resolved = entry;
  }
  entries.push(resolved);
  return entries;
}

/** What `watchFs` is given for an entry: its directory, or itself when that may not be read. */
function watchedPathOf(entry: string): string {
  const dir = nodePath().dirname(entry);
  return Deno.permissions.querySync({ name: "read", path: dir }).state === "granted" ? dir : entry;
}

/**
 * One watcher for all the poems. watchFs cannot add a path to a running
 * watcher, so when a deploy re-points a poem to another directory, a new
 * watcher replaces the old one (opened before the old closes, so nothing
 * falls between them); one per poem would soon exceed
 * fs.inotify.max_user_instances (128 by default).
 */
class PoemWatch {
  readonly #server: Watched;
  readonly #entries = new Map<Poem, string[]>();
  /** Entry path to the poems whose path goes through it. */
  #poemsAt = new Map<string, Set<Poem>>();
  #watcher?: Deno.FsWatcher;
  #watchedKey = "";
  // One timer per poem: a burst of writes to one poem neither delays nor
  // re-reads the others.
  readonly #timers = new Map<Poem, ReturnType<typeof setTimeout>>();
  /** The served directories, by real path, as the command line named them. */
  readonly #directories = new Map<string, string>();
  /** Files new in a served directory, told about once each. */
  readonly #newFiles = new Map<string, ReturnType<typeof setTimeout> | undefined>();
  #closed = false;
  constructor(server: Watched) {
    this.#server = server;
    for (const dir of server.directories ?? []) {
      let real = nodePath().resolve(dir);
      try {
        real = Deno.realPathSync(dir);
      } catch {
        // Gone since it was read: its poems' own entries are watched anyway.
      }
      this.#directories.set(real, dir);
    }
  }

  /** Starts watching; false when nothing can be watched (logged). */
  start(): boolean {
    for (const { poem } of this.#server.listeners) this.#entries.set(poem, this.#resolve(poem));
    return this.#rewatch();
  }

  close(): void {
    this.#closed = true;
    this.#watcher?.close();
    for (const timer of this.#timers.values()) clearTimeout(timer);
    for (const timer of this.#newFiles.values()) clearTimeout(timer);
  }

  #resolve(poem: Poem, previous?: string[]): string[] {
    try {
      return entriesOf(poem.path);
    } catch (err) {
      // E.g. --allow-read names the file alone: the file itself is all we may watch.
      if (!previous) {
        log.warning(
          "Cannot watch the directory of {poem} ({error}); a save by rename ends its watch.",
          { poem: poem.path, error: err instanceof Error ? err.message : String(err) },
        );
      }
      return previous ?? [nodePath().resolve(poem.path)];
    }
  }

  /** (Re)opens the watcher when the set of paths to watch changed. */
  #rewatch(): boolean {
    const poemsAt = new Map<string, Set<Poem>>();
    const paths = new Set<string>();
    for (const [poem, entries] of this.#entries) {
      for (const entry of entries) {
        if (!poemsAt.has(entry)) poemsAt.set(entry, new Set());
        poemsAt.get(entry)!.add(poem);
        paths.add(watchedPathOf(entry));
      }
    }
    for (const dir of this.#directories.keys()) paths.add(dir);
    this.#poemsAt = poemsAt;
    const key = [...paths].sort().join("\0");
    if (key === this.#watchedKey) return true;
    let watcher: Deno.FsWatcher;
    try {
      watcher = Deno.watchFs([...paths], { recursive: false });
    } catch (err) {
      log.error(
        this.#watcher
          ? "Cannot watch the poems' new directories, still watching the old; SIGHUP still reloads: {error}"
          : "Cannot watch the poems; SIGHUP still reloads: {error}",
        { error: err instanceof Error ? err.message : String(err) },
      );
      return false;
    }
    this.#watcher?.close();
    this.#watcher = watcher;
    this.#watchedKey = key;
    this.#listen(watcher);
    return true;
  }

  async #listen(watcher: Deno.FsWatcher): Promise<void> {
    try {
      for await (const event of watcher) {
        // Reading a file must never count as a change, or each re-read would
        // trigger the next; a write is reported as "modify" anyway.
        if (event.kind === "access") continue;
        for (const path of event.paths) {
          const poems = this.#poemsAt.get(nodePath().resolve(path));
          for (const poem of poems ?? []) this.#changed(poem);
          if (!poems && (event.kind === "create" || event.kind === "rename")) this.#appeared(path);
        }
      }
    } catch (err) {
      if (watcher !== this.#watcher) return; // replaced: the new one carries on
      log.error("Stopped watching the poems; SIGHUP still reloads: {error}", {
        error: err instanceof Error ? err.message : String(err),
      });
    }
  }

  /**
   * A file new in a served directory would be served after a restart, not
   * now (its port is not bound): say so once, if it is still there once the
   * writes settle (an editor's or `sed -i`'s temporary file is renamed away).
   */
  #appeared(path: string): void {
    const absolute = nodePath().resolve(path);
    const dir = this.#directories.get(nodePath().dirname(absolute));
    const name = nodePath().basename(absolute);
    if (dir === undefined || name.startsWith(".") || this.#newFiles.has(absolute)) return;
    this.#newFiles.set(
      absolute,
      setTimeout(() => {
        this.#newFiles.set(absolute, undefined);
        if (this.#closed) return;
        let file = false;
        try {
          file = Deno.statSync(absolute).isFile;
        } catch {
          // Gone already: a temporary file.
        }
        if (!file) {
          this.#newFiles.delete(absolute);
          return;
        }
        log.info("{file} appeared in {directory}: a new poem needs a restart.", {
          file: /[\\/]$/.test(dir) ? dir + name : `${dir}/${name}`,
          directory: dir,
        });
      }, WATCH_SETTLE_MS),
    );
  }

  #changed(poem: Poem): void {
    clearTimeout(this.#timers.get(poem));
    this.#timers.set(
      poem,
      setTimeout(() => {
        this.#timers.delete(poem);
        if (this.#closed) return;
        // A deploy may have re-pointed a link on the way: follow it first, so
        // later edits of the new target are seen too.
        const entries = this.#resolve(poem, this.#entries.get(poem));
        if (entries.join("\0") !== this.#entries.get(poem)!.join("\0")) {
          log.debug("{poem} now resolves to {target}; watching there.", {
            poem: poem.path,
            target: entries.at(-1),
          });
          this.#entries.set(poem, entries);
          this.#rewatch();
        }
        this.#server.reloadPoem(poem);
      }, WATCH_SETTLE_MS),
    );
  }
}
