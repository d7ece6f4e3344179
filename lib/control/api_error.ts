/**
 * An error the control endpoint answers with, in Toxiproxy's shape:
 * `{"error": "...", "status": N}` with N as the HTTP status.
 *
 * @module
 */

/**
 * An API error: its message and HTTP status, as Toxiproxy's `ApiError`.
 *
 * @example
 * ```ts
 * import { ApiError } from "./api_error.ts";
 * const err = ApiError.notFound("proxy");
 * console.log(err.status, JSON.stringify(err.body())); // 404 {"error":"proxy not found","status":404}
 * ```
 */
export class ApiError extends Error {
  /** The HTTP status to answer with. */
  readonly status: number;

  /** An error with Toxiproxy's message for it and its status. */
  constructor(message: string, status: number) {
    super(message);
    this.status = status;
  }

  /** Toxiproxy's `bad request body: ...` (400). */
  static badBody(why: string): ApiError {
    return new ApiError(`bad request body: ${why}`, 400);
  }

  /** Toxiproxy's `proxy not found` or `toxic not found` (404). */
  static notFound(what: "proxy" | "toxic"): ApiError {
    return new ApiError(`${what} not found`, 404);
  }

  /** Toxiproxy's `proxy already exists` or `toxic already exists` (409). */
  static exists(what: "proxy" | "toxic"): ApiError {
    return new ApiError(`${what} already exists`, 409);
  }

  /** The JSON body Toxiproxy answers with. */
  body(): { error: string; status: number } {
    return { error: this.message, status: this.status };
  }
}
