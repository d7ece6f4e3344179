/**
 * The admin endpoint's status page: one static HTML document with its
 * script inline, no build step and no external assets, so it works offline.
 * It polls `/status.json` twice a second and draws the tutorial's figure:
 * each listening socket with its client sockets, each client's progress a bar,
 * and the faults on purpose: each listener's, and each client's.
 *
 * @module
 */

import { COUNTED } from "../core/listener.ts";

/**
 * The page served at `GET /` by the admin endpoint.
 *
 * @example
 * ```ts
 * import { STATUS_PAGE } from "./status_page.ts";
 * new Response(STATUS_PAGE, { headers: { "content-type": "text/html; charset=utf-8" } });
 * ```
 */
export const STATUS_PAGE: string = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>poetry</title>
<style>
  :root { font: 15px/1.4 system-ui, sans-serif; color: #222; background: #f6f4ef; }
  body { margin: 1.5rem auto; max-width: 60rem; padding: 0 1rem; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  h1 small { font-weight: normal; color: #777; }
  #state { color: #777; margin-bottom: 1rem; }
  #state.draining { color: #b00; font-weight: bold; }
  #totals { display: flex; flex-wrap: wrap; gap: .5rem; margin-bottom: 1rem; }
  #totals div { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: .3rem .7rem; }
  #totals b { display: block; font-size: 1.2rem; font-variant-numeric: tabular-nums; }
  .listener { display: flex; gap: 1rem; align-items: flex-start; background: #fff;
    border: 1px solid #ddd; border-radius: 8px; padding: .8rem; margin-bottom: 1rem; }
  .socket { flex: 0 0 19rem; border-right: 3px solid #4a7; padding-right: .8rem; }
  .socket .poem { font-weight: bold; overflow-wrap: anywhere; }
  .socket .meta { color: #666; font-size: .9rem; }
  .clients { flex: 1; list-style: none; margin: 0; padding: 0; min-width: 0; }
  .clients .empty { color: #999; font-style: italic; }
  .transfer { display: grid; grid-template-columns: 11rem 1fr 11rem; gap: .6rem;
    align-items: center; font-size: .9rem; font-variant-numeric: tabular-nums; margin: .15rem 0; }
  .peer { font-family: ui-monospace, monospace; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  .bar { height: .8rem; background: #e6e2d8; border-radius: 4px; overflow: hidden; }
  .bar span { display: block; height: 100%; background: #4a7; }
  .more { color: #777; font-size: .9rem; }
  .socket .faults, .socket .applied { color: #a50; }
  .transfer .faults { grid-column: 1 / -1; margin-top: -.2rem; color: #a50; font-size: .8rem; }
</style>
</head>
<body>
<h1>poetry <small id="version"></small></h1>
<div id="state">connecting...</div>
<div id="totals"></div>
<div id="listeners"></div>
<script>
"use strict";
const COUNTED = ${JSON.stringify(COUNTED)};
const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
const num = (n) => n.toLocaleString("en-US");
const bytes = (n) => n < 1024 ? Math.round(n) + " B" : n < 1048576 ? (n / 1024).toFixed(1) + " KiB"
  : (n / 1048576).toFixed(1) + " MiB";
let last;

function draw(s) {
  const now = performance.now();
  $("version").textContent = s.version;
  const state = $("state");
  state.className = s.draining ? "draining" : "";
  state.textContent = s.draining ? "draining: no longer accepting"
    : "serving, up " + s.totals.uptimeSeconds + " s";
  const t = s.totals;
  let rate = "", connRate = "";
  if (last) {
    const secs = (now - last.at) / 1000;
    rate = bytes(Math.max(0, (t.sentBytes - last.sent) / secs)) + "/s";
    connRate = ((ended(t) - last.ended) / secs).toFixed(1) + "/s";
  }
  last = { at: now, sent: t.sentBytes, ended: ended(t) };
  const totals = $("totals");
  totals.replaceChildren();
  // "faulted" and the faults applied only where there are faults, as in the log.
  const applied = Object.entries(t.faultsApplied);
  const faults = t.faulted > 0 || applied.length > 0;
  for (const [label, value] of [
    ["in flight", num(t.inFlight)],
    ...COUNTED.filter((key) => faults || key !== "faulted").map((key) => [key, num(t[key])]),
    ...applied.map(([name, n]) => [name + " applied", num(n)]),
    ["bytes sent", bytes(t.sentBytes)], ["send rate", rate || "-"],
    ["connections", connRate || "-"], ["accept errors", num(t.acceptErrors)],
    ["log records dropped", num(t.droppedLogRecords)],
  ]) {
    const box = el("div", "total");
    box.append(el("b", "", value), el("span", "", label));
    box.dataset.total = label;
    totals.append(box);
  }
  const listeners = $("listeners");
  listeners.replaceChildren();
  for (const l of s.listeners) {
    const card = el("section", "listener");
    card.dataset.address = l.address;
    const socket = el("div", "socket");
    socket.append(
      el("div", "poem", l.poem),
      el("div", "meta", "listening on " + l.address),
      el("div", "meta", bytes(l.size) + ", " + (l.pace
        ? "slow: " + l.pace.numBytes + " bytes every " + l.pace.delay + " s" : "fast")),
      el("div", "meta active", l.active + " in flight"),
    );
    if (l.faults.length > 0) {
      const applied = Object.entries(l.faultsApplied).map(([name, n]) => num(n) + " " + name);
      socket.append(
        el("div", "meta faults", "faults: " + l.faults.join("; ") + " (--seed " + l.seed + ")"),
        el("div", "meta applied", "applied: " + applied.join(", ")),
      );
    }
    const clients = el("ul", "clients");
    if (l.transfers.length === 0) clients.append(el("li", "empty", "no clients"));
    for (const x of l.transfers) {
      const row = el("li", "transfer");
      row.dataset.peer = x.peer;
      row.dataset.sent = x.sent;
      row.dataset.total = x.total;
      const bar = el("div", "bar");
      const fill = el("span");
      fill.style.width = (x.total ? 100 * x.sent / x.total : 100).toFixed(1) + "%";
      bar.append(fill);
      const done = num(x.sent) + " of " + num(x.total) + " B, " + x.seconds.toFixed(1) + " s";
      row.append(el("span", "peer", x.peer), bar, el("span", "progress", done));
      row.dataset.faults = x.faults.join(", ");
      if (x.faults.length > 0) row.append(el("span", "faults", "faults: " + x.faults.join(", ")));
      clients.append(row);
    }
    if (l.unlisted > 0) clients.append(el("li", "more", "and " + num(l.unlisted) + " more"));
    card.append(socket, clients);
    listeners.append(card);
  }
}

function ended(t) {
  return COUNTED.reduce((n, key) => n + t[key], 0);
}

async function poll() {
  try {
    const response = await fetch("status.json", { cache: "no-store" });
    draw(await response.json());
  } catch (err) {
    $("state").textContent = "server unreachable (" + err.message + "); retrying";
  }
  setTimeout(poll, 500);
}
poll();
</script>
</body>
</html>
`;
