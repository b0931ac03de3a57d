/**
 * The one helper that talks to the `mlops-workbench` REST namespace of the server extension.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** The URL namespace of every handler (`<base_url>/mlops-workbench/...`). */
export const API_NAMESPACE = 'mlops-workbench';

/** The body the server sends for a failed call: an `MLWError` becomes `{error, message}`. */
export interface IAPIErrorBody {
  /** Exception class name, e.g. `NotFound`. */
  error?: string;
  /** Human-readable explanation, shown to the user as is. */
  message?: string;
  /** Set by jupyter_server's own error pages (e.g. 403). */
  reason?: string;
}

/** A failed REST call, carrying the server's error class name and message. */
export class APIError extends Error {
  constructor(
    /** HTTP status, or 0 when the server could not be reached. */
    readonly status: number,
    /** The server's error class (`NotFound`, `InvalidInput`...) or an HTTP reason. */
    readonly kind: string,
    message: string
  ) {
    super(message);
    this.name = 'APIError';
  }
}

/**
 * Call `<base_url>/mlops-workbench/<endPoint>` and return its JSON body as `T`.
 *
 * Throws an `APIError` whose `message` is the server's own message when the call fails.
 */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, API_NAMESPACE, endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new APIError(0, 'NetworkError', `cannot reach the Jupyter server at ${url}: ${String(error)}`);
  }
  const text = await response.text();
  let body: unknown = null;
  if (text.length > 0) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!response.ok) {
    const detail = (body ?? {}) as IAPIErrorBody;
    throw new APIError(
      response.status,
      detail.error ?? (response.statusText || `HTTP ${response.status}`),
      detail.message || detail.reason || text || `HTTP ${response.status} from ${url}`
    );
  }
  if (body === null) {
    throw new APIError(response.status, 'InvalidResponse', `expected JSON from ${url}, got: ${text.slice(0, 200)}`);
  }
  return body as T;
}
