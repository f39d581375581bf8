// The signed-in session, shared by every tab of this site.
//
// The refresh token never reaches this script: the server keeps it in an httpOnly,
// SameSite=Strict cookie (X-Refresh-Cookie). The short-lived access token lives in
// memory; tabs hand it to each other over a BroadcastChannel. A refresh spends the
// cookie's token, and the server treats two refreshes with one token as theft, so
// there is never more than one in flight: one per tab (a shared promise) and one
// across tabs (a Web Lock). Inside the lock a tab first checks whether another tab
// refreshed while it waited, and uses that token instead.

const COOKIE_HEADER = { "X-Refresh-Cookie": "true" };
const LOCK = "townsquare-refresh";
// Not a secret: only a hint that this browser has a session worth restoring, so a
// visitor who never signed in is not sent to /auth/refresh for a 401.
const HINT = "townsquare:signed-in";
const channel = "BroadcastChannel" in window ? new BroadcastChannel("townsquare-session") : null;

let access = null;
let expiresAt = 0;
let refreshTimer = null;
let inflight = null;
const handlers = { token: new Set(), signedOut: new Set() };

export const on = (event, handler) => handlers[event].add(handler);
const emit = (event, ...args) => handlers[event].forEach((handler) => handler(...args));

export const accessToken = () => access;
export const refreshCount = { value: 0 };

export class AuthError extends Error {}

function adopt(token, expiry, { broadcast }) {
  access = token;
  expiresAt = expiry;
  localStorage.setItem(HINT, "1");
  clearTimeout(refreshTimer);
  // A minute before expiry (at least 10 s from now). Every tab has such a timer; the
  // first to fire refreshes and the others adopt its token and start over.
  const delay = Math.max(10000, expiresAt - Date.now() - 60000);
  refreshTimer = setTimeout(() => refresh(token).catch(() => {}), delay);
  if (broadcast) channel?.postMessage({ type: "token", access: token, expiresAt: expiry });
  emit("token", token);
}

function fromPair(pair, options) {
  adopt(pair.access_token, Date.now() + pair.expires_in * 1000, options);
}

function forget() {
  access = null;
  expiresAt = 0;
  clearTimeout(refreshTimer);
  localStorage.removeItem(HINT);
}

async function authPost(path, body) {
  return fetch(path, { method: "POST", headers: COOKIE_HEADER, body, credentials: "same-origin" });
}

async function failure(response, fallback) {
  const data = await response.json().catch(() => null);
  const detail = data?.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((e) => `${e.loc.slice(1).join(".")}: ${e.msg}`).join("; ");
  return fallback;
}

export async function login(email, password) {
  const response = await authPost("/auth/token", new URLSearchParams({ username: email, password }));
  if (!response.ok) throw new AuthError(await failure(response, `Sign-in failed (${response.status})`));
  fromPair(await response.json(), { broadcast: true });
}

const withLock = (task) => (navigator.locks ? navigator.locks.request(LOCK, task) : task());

// A fresh access token. `stale` is the token the caller found wanting: if the one we
// hold now differs (another tab or caller refreshed meanwhile), that one is used.
// Resolves true when signed in, false when the session is over; rejects when the
// server cannot be reached (try again later).
export function refresh(stale = access) {
  if (inflight) return inflight;
  inflight = withLock(async () => {
    if (access && access !== stale && expiresAt - Date.now() > 30000) return true;
    const response = await authPost("/auth/refresh");
    refreshCount.value += 1;
    if (response.ok) {
      fromPair(await response.json(), { broadcast: true });
      return true;
    }
    if (response.status === 401 || response.status === 403 || response.status === 422) {
      end({ broadcast: true, reason: "ended" });
      return false;
    }
    throw new Error(`refresh failed (${response.status})`);
  }).finally(() => {
    inflight = null;
  });
  return inflight;
}

// On page load: sign back in from the cookie, when this browser had a session.
export async function restore() {
  if (!localStorage.getItem(HINT)) return false;
  return refresh(null);
}

// `reason`: "ended" when the server ended the session (ended from another device, a
// password reset, the account disabled, or simply expired); "logout" when a person
// logged out in this browser.
function end({ broadcast, reason }) {
  const had = access !== null || localStorage.getItem(HINT) !== null;
  forget();
  if (broadcast) channel?.postMessage({ type: "signed-out", reason });
  if (had) emit("signedOut", reason);
}

// `reason` "ended" when the login ends for a reason the other tabs should tell (the
// password was reset).
export async function logout(reason = "logout") {
  end({ broadcast: true, reason });
  await withLock(() => authPost("/auth/logout")).catch(() => {});
}

channel?.addEventListener("message", ({ data }) => {
  if (data?.type === "token" && typeof data.access === "string" && data.expiresAt > expiresAt) {
    adopt(data.access, data.expiresAt, { broadcast: false });
  } else if (data?.type === "signed-out") {
    end({ broadcast: false, reason: data.reason === "ended" ? "ended" : "logout" });
  }
});
