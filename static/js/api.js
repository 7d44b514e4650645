// The session API (SPEC 5a): same-origin fetches with the CSRF header on
// every mutation. Errors come back as ApiError carrying the spec's code.

const body = document.body.dataset;

export class ApiError extends Error {
  constructor(status, code, message, retryAfterMs) {
    super(message || `Request failed (${status})`);
    this.status = status;
    this.code = code || "unavailable";
    this.retryAfterMs = retryAfterMs;
  }
}

async function request(method, path, payload, { raw = false, keepalive = false } = {}) {
  const headers = { Accept: "application/json" };
  let sent = payload;
  if (method !== "GET") headers["X-CSRF-Token"] = body.csrf;
  if (payload !== undefined && !(payload instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    sent = JSON.stringify(payload);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: sent, credentials: "same-origin", cache: "no-store", keepalive });
  } catch (err) {
    throw new ApiError(0, "unavailable", "You appear to be offline.");
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code, error.message, error.retry_after_ms);
  }
  return raw ? response : data;
}

export const api = {
  get: (path) => request("GET", path),
  post: (path, payload) => request("POST", path, payload),
  // `keepalive`: the request outlives the page (a save as it goes).
  put: (path, payload, { keepalive = false } = {}) => request("PUT", path, payload, { keepalive }),
  del: (path) => request("DELETE", path),
};

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
