/**
 * A `--config` re-read applied to the listeners there are (SIGHUP): their
 * faults, paces and access lists change for the clients that come next.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { formatAddress } from "../base/address.ts";
import { UsageError } from "../base/errors.ts";
import type { PoemListener } from "../core/listener.ts";
import type { PaceWheel } from "../core/pace.ts";
import { Poem } from "../core/poem.ts";
import {
  accessFor,
  applyPaceAndFaults,
  factoryFor,
  type ListenerState,
  logFaults,
} from "./listeners.ts";
import type { ListenerSettings, ServeOptions } from "./options.ts";

const log = getLogger(["poetry", "server"]);

/**
 * Applies `settings` (listener i's new settings at index i) to `listeners`
 * and their `states`; see `PoetryServer.reconfigure` (server.ts).
 * @returns how many listeners changed.
 */
export function reconfigureListeners(
  listeners: readonly PoemListener[],
  states: ListenerState[],
  wheels: Map<number, PaceWheel>,
  settings: ListenerSettings[],
  defaults: ServeOptions,
): number {
  if (settings.length !== states.length) {
    log.warning(
      "The configuration now has {now} listeners, not {then}: adding or removing a listener needs a restart.",
      { now: settings.length, then: states.length },
    );
  }
  let changed = 0;
  for (const [i, state] of states.entries()) {
    const own = settings[i];
    if (!own) break;
    const path = own.poem instanceof Poem ? own.poem.path : own.poem;
    const iface = own.iface ?? defaults.iface ?? "localhost";
    if (path !== state.poem.path || iface !== state.iface || (own.port ?? 0) !== state.port) {
      log.warning(
        "Listener {index} ({poem} on {address}) changed its poem, port or address: that needs a restart; its faults and pace are kept.",
        {
          index: i,
          poem: state.poem.path,
          address: formatAddress(listeners[i].addr),
        },
      );
      continue;
    }
    const before = state.options.faults?.faults.map((f) => f.label + f.probability).join();
    const pace = state.pace;
    try {
      const next = { ...state, options: { ...state.options } };
      applyPaceAndFaults(
        next,
        own.pace ?? defaults.pace,
        own.faults ?? defaults.faults,
        wheels,
      );
      if (next.options.faults?.resets && !state.resettable) {
        throw new UsageError(
          "reset-after and reset-at need a restart: this listener was started without them",
        );
      }
      const after = next.options.faults?.faults.map((f) => f.label + f.probability).join();
      const access = accessFor(own, defaults);
      next.options.access = access.access;
      const accessChanged = access.text !== state.accessText;
      if (
        before === after && next.pace?.delay === pace?.delay &&
        next.pace?.numBytes === pace?.numBytes && !accessChanged
      ) {
        continue;
      }
      // Keep the sequence when the faults are the same: the run stays reproducible.
      if (before === after) next.options.faults = state.options.faults;
      Object.assign(state.options, next.options);
      listeners[i].factory = factoryFor(state.options);
      state.pace = next.pace;
      changed++;
      logFaults(listeners[i], state, "Reconfigured");
      if (accessChanged) {
        state.accessText = access.text;
        log.info("Reconfigured {address}: --allow {allow}, --deny {deny}.", {
          address: formatAddress(listeners[i].addr),
          allow: JSON.parse(access.text)[0].join(" ") || "(everyone)",
          deny: JSON.parse(access.text)[1].join(" ") || "(no one)",
        });
      }
    } catch (err) {
      log.error("Listener {index} ({address}) keeps its settings: {error}", {
        index: i,
        address: formatAddress(listeners[i].addr),
        error: err instanceof Error ? err.message : String(err),
      });
    }
  }
  return changed;
}
