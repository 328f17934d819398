// Stand-ins for the browser features the SDK uses, so that its logic runs under `node --test`: a manual clock,
// a scriptable WebSocket, a BroadcastChannel "network", a Web Locks manager with the real queueing rules, and
// an env object that ties them together (see src/env.js for what the SDK expects).

import { memoryStorage } from "../../src/env.js";

/** A clock that moves only when the test says so. */
export class FakeClock {
  constructor() {
    this.t = 0;
    this.queue = [];
    this.nextId = 1;
  }
  now() {
    return this.t;
  }
  setTimeout(fn, ms) {
    const id = this.nextId++;
    this.queue.push({ id, at: this.t + Math.max(0, ms || 0), fn });
    return id;
  }
  clearTimeout(id) {
    this.queue = this.queue.filter((e) => e.id !== id);
  }
  /** Runs every timer due within `ms`, in time order, including timers they set. */
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      this.queue.sort((a, b) => a.at - b.at || a.id - b.id);
      const next = this.queue[0];
      if (!next || next.at > end) break;
      this.queue.shift();
      this.t = next.at;
      next.fn();
    }
    this.t = end;
  }
  pending() {
    return this.queue.length;
  }
}

/** Every FakeWebSocket made, in order, with what the page sent on it. */
export class SocketLog {
  constructor() {
    this.sockets = [];
  }
  get last() {
    return this.sockets[this.sockets.length - 1];
  }
  /** A WebSocket class bound to this log. */
  ctor() {
    const log = this;
    return class FakeWebSocket {
      constructor(url) {
        this.url = url;
        this.sent = [];
        this.readyState = 0;
        this.closedByPage = null;
        log.sockets.push(this);
      }
      send(text) {
        if (this.readyState !== 1) throw new Error("send on a socket that is not open");
        this.sent.push(text);
      }
      close(code, reason) {
        this.closedByPage = { code, reason };
        this.readyState = 3;
      }
      // Server side of the fake:
      serverOpen() {
        this.readyState = 1;
        this.onopen && this.onopen({});
      }
      serverSend(text) {
        this.onmessage && this.onmessage({ data: typeof text === "string" ? text : JSON.stringify(text) });
      }
      serverClose(code = 1006) {
        this.readyState = 3;
        this.onclose && this.onclose({ code, wasClean: code === 1000 || code === 1001 });
      }
    };
  }
}

/** Channels by name; delivery is asynchronous (a microtask), as with the real BroadcastChannel. */
export class ChannelNet {
  constructor() {
    this.members = new Map();
  }
  ctor() {
    const net = this;
    return class FakeBroadcastChannel {
      constructor(name) {
        this.name = name;
        this.onmessage = null;
        this.closed = false;
        if (!net.members.has(name)) net.members.set(name, new Set());
        net.members.get(name).add(this);
      }
      postMessage(message) {
        if (this.closed) throw new Error("posted on a closed channel");
        const copy = structuredClone(message);
        for (const other of net.members.get(this.name)) {
          if (other === this) continue;
          queueMicrotask(() => !other.closed && other.onmessage && other.onmessage({ data: structuredClone(copy) }));
        }
      }
      close() {
        this.closed = true;
        net.members.get(this.name).delete(this);
      }
    };
  }
}

/** navigator.locks with exclusive locks, a FIFO wait queue, ifAvailable and AbortSignal. */
export class FakeLocks {
  constructor() {
    this.held = new Map(); // name -> true
    this.waiting = new Map(); // name -> [{cb, resolve, reject, signal}]
  }
  request(name, options, cb) {
    if (typeof options === "function") {
      cb = options;
      options = {};
    }
    return new Promise((resolve, reject) => {
      if (!this.held.get(name)) return this.grant(name, cb, resolve, reject);
      if (options.ifAvailable) {
        Promise.resolve()
          .then(() => cb(null))
          .then(resolve, reject);
        return;
      }
      const entry = { cb, resolve, reject };
      if (!this.waiting.has(name)) this.waiting.set(name, []);
      this.waiting.get(name).push(entry);
      if (options.signal) {
        options.signal.addEventListener("abort", () => {
          const q = this.waiting.get(name) || [];
          const i = q.indexOf(entry);
          if (i >= 0) {
            q.splice(i, 1);
            reject(new DOMException("aborted", "AbortError"));
          }
        });
      }
    });
  }
  grant(name, cb, resolve, reject) {
    this.held.set(name, true);
    Promise.resolve()
      .then(() => cb({ name, mode: "exclusive" }))
      .then(
        (v) => {
          this.release(name);
          resolve(v);
        },
        (e) => {
          this.release(name);
          reject(e);
        },
      );
  }
  release(name) {
    this.held.set(name, false);
    const q = this.waiting.get(name) || [];
    const next = q.shift();
    if (next) this.grant(name, next.cb, next.resolve, next.reject);
  }
}

/** One "tab": an env sharing the clock, sockets, channels and locks of a "browser". */
export function fakeEnv({ clock, sockets, net, locks, storage = memoryStorage(), location } = {}) {
  const errors = [];
  const warnings = [];
  return {
    WebSocket: sockets.ctor(),
    BroadcastChannel: net ? net.ctor() : undefined,
    locks,
    navigator: { onLine: true },
    location: location || { host: "127.0.0.1:8087", protocol: "http:", href: "http://127.0.0.1:8087/" },
    storage,
    setTimeout: (fn, ms) => clock.setTimeout(fn, ms),
    clearTimeout: (id) => clock.clearTimeout(id),
    now: () => clock.now(),
    random: seededRandom(),
    console: {
      error: (...a) => errors.push(a.join(" ")),
      warn: (...a) => warnings.push(a.join(" ")),
      log: () => {},
    },
    addEventListener: null,
    errors,
    warnings,
  };
}

let seed = 1;
/** A different deterministic sequence per env, so that tab ids and markers differ between fake tabs. */
export function seededRandom() {
  let x = (seed++ * 2654435761) >>> 0 || 1;
  return () => {
    // xorshift32
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}

/** Lets queued microtasks and promise callbacks run (channel deliveries, lock grants). */
export async function settle(rounds = 20) {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}
