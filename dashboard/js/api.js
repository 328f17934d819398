// The dashboard API client: every request the pages make goes through here. Errors become exceptions with
// a sentence the page can show as it is.

const BASE = "/api/dashboard/v1";
let csrfToken = "";
let onExpired = () => {};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Remembers the anti-CSRF token of the current session (sent back in X-Halley-CSRF). */
export function setSession(me) {
  csrfToken = me ? me.csrf_token : "";
}

/** Called when the server says the session is gone (expired, password changed elsewhere). */
export function whenExpired(callback) {
  onExpired = callback;
}

export async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-Halley-CSRF"] = csrfToken || "-";
  let response;
  try {
    response = await fetch(BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch {
    throw new ApiError(0, "unreachable", "Cannot reach the server. Check your connection and try again.");
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    if (!response.ok) throw new ApiError(response.status, "http", `The server answered ${response.status}. Please try again.`);
  }
  if (!response.ok) {
    const err = new ApiError(response.status, data?.error || "http", data?.message || `The server answered ${response.status}.`);
    if (response.status === 401 && path !== "/login" && path !== "/me") onExpired(err);
    throw err;
  }
  return data;
}

export const api = {
  signUpStatus: () => request("GET", "/signup"),
  signUp: (email, password) => request("POST", "/signup", { email, password }),
  logIn: (email, password) => request("POST", "/login", { email, password }),
  logOut: () => request("POST", "/logout"),
  me: () => request("GET", "/me"),
  changePassword: (current_password, new_password) => request("POST", "/password", { current_password, new_password }),
  keys: () => request("GET", "/keys"),
  createKey: (name) => request("POST", "/keys", { name }),
  revealKey: (id) => request("GET", `/keys/${id}/secret`),
  revokeKey: (id, confirmLast) => request("DELETE", `/keys/${id}`, confirmLast ? { confirm_last: true } : undefined),
  origins: () => request("GET", "/origins"),
  setOrigins: (origins) => request("PUT", "/origins", { origins }),
  security: () => request("GET", "/security"),
  setSecurity: (require_tls) => request("PUT", "/security", { require_tls }),
  pusher: () => request("GET", "/pusher"),
  setPusher: (client_events) => request("PUT", "/pusher", { client_events }),
  usage: () => request("GET", "/usage"),
  testMessage: (pipe, event, message) => request("POST", "/test-message", { pipe, event, message }),
};
