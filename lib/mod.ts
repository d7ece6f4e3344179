/**
 * poetry: serve poems over TCP, fast or slow, as a library.
 *
 * ```ts
 * import { serve } from "./mod.ts";
 * const server = await serve(["poems/"], { iface: "127.0.0.1", port: 0 });
 * console.log(server.listeners.map((l) => l.addr.port));
 * await server.shutdown();
 * ```
 *
 * The public names, by what they are for (everything else in lib/ is the
 * program's own and may change):
 * - serving: {@linkcode serve}, its options, the server and listener handles,
 *   and the observer a server tells of each transfer;
 * - deciding each connection (the tutorial's `buildProtocol`): the factory a
 *   listener asks, and the sender it builds;
 * - running as a service: {@linkcode runAsService};
 * - the client: {@linkcode fetchPoem};
 * - faults on purpose: their names and parser;
 * - the errors, and the version.
 *
 * @module
 */

// Serving
export { serve } from "./server/server.ts";
export { PoetryServer } from "./server/server.ts";
export type { ListenerSettings, ServeOptions } from "./server/options.ts";
export type { FaultsApplied, OtherDrains, ShutdownSummary } from "./server/summary.ts";
export {
  PoemListener,
  type PoemListenerOptions,
  type TransferCounts,
  type TransferInFlight,
  type TransferObserver,
} from "./core/listener.ts";
export { ConnectionCap } from "./core/cap.ts";
export { type Pace, type PacedTask, PaceWheel } from "./core/pace.ts";
export { loadPoems, Poem, type PoemContent, type PoemReader } from "./core/poem.ts";

// Deciding each connection
export {
  type Decision,
  PoemFactory,
  Refusal,
  type RefusalReason,
  type SenderFactory,
} from "./core/connection.ts";
export {
  type Outcome,
  OUTCOMES,
  PoemSender,
  type SenderConn,
  type SenderOptions,
  type SendResult,
} from "./core/sender.ts";

// Running as a service
export { runAsService, type Service, type ServiceOptions } from "./service/service.ts";
export { ServerStats, type StatsSnapshot } from "./observe/stats.ts";

// The client
export { fetchPoem, parseAddress, type PoemAddress } from "./client.ts";

// Faults on purpose
export {
  type Fault,
  FAULT_NAMES,
  type FaultName,
  FAULTS,
  type FaultValueKind,
  parseFault,
} from "./fixture/fault_spec.ts";
export { ControlEndpoint, type ControlOptions } from "./control/control.ts";

// Errors and the version
export { PoetryError, StartupError, UsageError } from "./base/errors.ts";
export { VERSION } from "./base/version.ts";
