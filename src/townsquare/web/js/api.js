// JSON over HTTP with the session's access token; one refresh and retry on a 401.
import * as session from "./session.js";

export class ApiError extends Error {
  constructor(status, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter; // seconds, from a 429's Retry-After
  }
}

function detailText(data, fallback) {
  const detail = data?.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((e) => `${e.loc.slice(1).join(".")}: ${e.msg}`).join("; ");
  return fallback;
}

export async function api(method, path, { json, auth = true, headers = {} } = {}) {
  const init = { method, headers: { ...headers } };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  for (let attempt = 0; ; attempt += 1) {
    const token = session.accessToken();
    if (auth && token) init.headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiError(0, "The server cannot be reached");
    }
    if (response.status === 401 && auth && attempt === 0 && (await session.refresh(token).catch(() => false))) {
      continue;
    }
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) {
      const retryAfter = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
      throw new ApiError(
        response.status,
        detailText(data, `${response.status} ${response.statusText}`),
        Number.isFinite(retryAfter) ? retryAfter : null,
      );
    }
    return data;
  }
}

export const get = (path) => api("GET", path);
export const room = (name) => `/rooms/${encodeURIComponent(name)}`;
