// Everything the SDK takes from the browser, in one object, so that the protocol code runs under Node with
// fakes (unit tests) and so that a missing feature (no BroadcastChannel, no locks, storage blocked in a
// sandboxed frame) is decided in one place.

import { defaultRandom } from "./random.js";

export function browserEnv() {
  const g = globalThis;
  const nav = g.navigator;
  return {
    WebSocket: g.WebSocket,
    BroadcastChannel: g.BroadcastChannel,
    locks: nav && nav.locks ? nav.locks : undefined,
    navigator: nav,
    location: g.location,
    storage: safeStorage(g),
    session: safeSession(g),
    setTimeout: (fn, ms) => g.setTimeout(fn, ms),
    clearTimeout: (id) => g.clearTimeout(id),
    now: () => Date.now(),
    random: defaultRandom,
    console: g.console,
    fetch: typeof g.fetch === "function" ? (url) => g.fetch(url) : null,
    addEventListener: typeof g.addEventListener === "function" ? (type, fn) => g.addEventListener(type, fn) : null,
  };
}

/** localStorage, or a Map-backed stand-in where reading it throws (sandboxed frames, some privacy modes). */
function safeStorage(g) {
  try {
    const s = g.localStorage;
    if (s) {
      const probe = "__halley_probe__";
      s.setItem(probe, "1");
      s.removeItem(probe);
      return s;
    }
  } catch {
    // Fall through to memory storage.
  }
  return memoryStorage();
}

/** sessionStorage where it works (positions survive a reload of the tab), else null. */
function safeSession(g) {
  try {
    const s = g.sessionStorage;
    if (s) {
      s.getItem("halley_positions");
      return s;
    }
  } catch {
    // Blocked: positions live in memory only.
  }
  return null;
}

export function memoryStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => void m.set(k, String(v)),
    removeItem: (k) => void m.delete(k),
  };
}
