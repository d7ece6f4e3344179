/**
 * Errors the program reports to its user as one `error:` line and an exit
 * code, never as a stack trace.
 *
 * @module
 */

/**
 * Exit code for bad input: wrong options, missing or unreadable poems.
 *
 * @example
 * ```ts
 * import { EXIT_USAGE } from "./errors.ts";
 * console.log(EXIT_USAGE); // 2
 * ```
 */
export const EXIT_USAGE = 2;
/**
 * Exit code for failures at run time: port in use, address not available.
 *
 * @example
 * ```ts
 * import { EXIT_RUNTIME } from "./errors.ts";
 * console.log(EXIT_RUNTIME); // 1
 * ```
 */
export const EXIT_RUNTIME = 1;

/**
 * A mistake in how the program was invoked. Its message says what is wrong;
 * its hint says what to do.
 *
 * @example
 * ```ts
 * import { UsageError } from "./errors.ts";
 * throw new UsageError("--port must be a number", "use e.g. --port 10000");
 * ```
 */
export class UsageError extends Error {
  /** What to do about it, printed on a second line. */
  readonly hint?: string;
  /** The process exit code for this error. */
  readonly exitCode: number = EXIT_USAGE;
  /** An error with a message saying what is wrong and a hint saying what to do. */
  constructor(message: string, hint?: string) {
    super(message);
    this.name = "UsageError";
    this.hint = hint;
  }
}

/**
 * A failure the environment caused while starting: the port is taken, the
 * address does not exist or does not resolve.
 *
 * @example
 * ```ts
 * import { StartupError } from "./errors.ts";
 * throw new StartupError("port 10000 is already in use");
 * ```
 */
export class StartupError extends Error {
  /** What to do about it, printed on a second line. */
  readonly hint?: string;
  /** The process exit code for this error. */
  readonly exitCode: number = EXIT_RUNTIME;
  /** An error with a message saying what is wrong and a hint saying what to do. */
  constructor(message: string, hint?: string) {
    super(message);
    this.name = "StartupError";
    this.hint = hint;
  }
}
