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
 * @module
 */

export { AccessList, type Cidr, parseCidr } from "./policies/access.ts";
export {
  addReports,
  type StatusReport,
  statusReport,
  type TransferStatus,
} from "./observe/status.ts";
export { AdminEndpoint, type AdminOptions } from "./observe/admin.ts";
export { fetchPoem, parseAddress, type PoemAddress } from "./client.ts";
export { EXIT_RUNTIME, EXIT_USAGE, PoetryError, StartupError, UsageError } from "./base/errors.ts";
export { ConnectionCap } from "./core/cap.ts";
export {
  COUNTED,
  emptyCounts,
  PoemListener,
  type TransferCounts,
  type TransferInFlight,
  type TransferObserver,
} from "./core/listener.ts";
export { formatAddress } from "./base/address.ts";
export {
  connectionTrace,
  droppedLogRecords,
  flushLogs,
  type LogLevelName,
  type LogOptions,
  logPacedWrite,
  setupLogging,
  writeForwarded,
  writeInBackground,
} from "./base/log.ts";
export { escapeControl, type LogFormat } from "./base/log_format.ts";
export { leastDuration, type Pace, type PacedTask, PaceWheel, writesNeeded } from "./core/pace.ts";
export {
  MAX_PROXY_HEADER_BYTES,
  parseProxyHeader,
  PROXY_HEADER_TIMEOUT_MS,
  type ProxyHeader,
  ProxyHeaderError,
  readProxyHeader,
} from "./policies/proxy.ts";
export {
  BLOCK_SIZE,
  loadPoems,
  memoryContent,
  Poem,
  type PoemContent,
  type PoemReader,
  STREAM_THRESHOLD,
} from "./core/poem.ts";
export {
  LINGER_MS,
  type Outcome,
  OUTCOMES,
  PoemSender,
  type SenderConn,
  type SenderOptions,
  type SendResult,
} from "./core/sender.ts";
export { addSummaries, type OtherDrains, type ShutdownSummary } from "./server/summary.ts";
export { type ListenerSettings, type ServeOptions } from "./server/options.ts";
export { PoetryServer, serve } from "./server/server.ts";
export {
  combineConfig,
  loadConfig,
  parseConfig,
  type PoetryConfig,
  reloadConfig,
} from "./service/config.ts";
export {
  type Ending,
  type Fault,
  FAULT_NAMES,
  type FaultName,
  parseFault,
  randomSeed,
  SeededRandom,
} from "./fixture/fault_spec.ts";
export { ConnectionFaults, type FaultedResult, ListenerFaults } from "./fixture/fault_plan.ts";
export { type FaultableConn, FaultyConn, type FaultyConnOptions } from "./fixture/faulty_conn.ts";
export { type ListenerAddress, writePortsFile } from "./service/ports_file.ts";
export { ResettableConn, ResettableListener } from "./fixture/reset_listener.ts";
export { runAsService, type ServiceOptions } from "./service/service.ts";
export { addSnapshots, logStats, ServerStats, type StatsSnapshot } from "./observe/stats.ts";
export { SharedCap } from "./policies/shared_cap.ts";
export {
  type FromWorker,
  type SpawnOptions,
  type ToWorker,
  type WorkerInit,
  WorkerPool,
  type WorkerRequest,
} from "./scale/workers.ts";
export { STATUS_PAGE } from "./observe/status_page.ts";
export {
  addFamilies,
  DURATION_BUCKETS,
  exposition,
  EXPOSITION_CONTENT_TYPE,
  Histogram,
  type Labels,
  type MetricFamily,
} from "./observe/exposition.ts";
export { PoetryMetrics } from "./observe/metrics.ts";
export { VERSION } from "./base/version.ts";
