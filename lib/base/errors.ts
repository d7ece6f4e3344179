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
 * An error reported to the user as one `error:` line, an optional hint line,
 * and an exit code, never as a stack trace.
 *
 * @example
 * ```ts
 * import { PoetryError, UsageError } from "./errors.ts";
 * const err: PoetryError = new UsageError("no poem given", "name a poem file");
 * console.error(`error: ${err.message}\n  ${err.hint}`);
 * ```
 */
export class PoetryError extends Error {
  /** What to do about it, printed on a second line. */
  readonly hint?: string;
  /** The process exit code for this error. */
  readonly exitCode: number;
  /** An error that says what is wrong, what to do, and how to exit. */
  constructor(message: string, hint: string | undefined, exitCode: number) {
    super(message);
    this.name = new.target.name;
    this.hint = hint;
    this.exitCode = exitCode;
  }
}

/**
 * A mistake in how the program was invoked. Its message says what is wrong;
 * its hint says what to do. Exit code 2.
 *
 * @example
 * ```ts
 * import { UsageError } from "./errors.ts";
 * throw new UsageError("--port must be a number", "use e.g. --port 10000");
 * ```
 */
export class UsageError extends PoetryError {
  /** A usage error with a message and a hint. */
  constructor(message: string, hint?: string) {
    super(message, hint, EXIT_USAGE);
  }
}

/**
 * A failure the environment caused while starting: the port is taken, the
 * address does not exist or does not resolve. Exit code 1.
 *
 * @example
 * ```ts
 * import { StartupError } from "./errors.ts";
 * throw new StartupError("port 10000 is already in use");
 * ```
 */
export class StartupError extends PoetryError {
  /** A start-up failure with a message and a hint. */
  constructor(message: string, hint?: string) {
    super(message, hint, EXIT_RUNTIME);
  }
}
