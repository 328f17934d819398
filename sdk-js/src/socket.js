// The one WebSocket of a tab group (held by the leader tab): opens it, re-sends the subscription list on
// every (re)connect, queues commands while it is down, and reconnects with backoff after any close that the
// page did not ask for — a server restart's clean close (1001) included, which the original did not retry.

import { Backoff } from "./backoff.js";
import { subscriptionCommand } from "./commands.js";

/** Subscription changes made within this window go out as one frame (the original's 50 ms batching). */
export const SUBSCRIBE_BATCH_MS = 50;
/** A connection that stays up this long counts as a success: the next failure starts from the base delay. */
export const STABLE_AFTER_MS = 5000;
/** While the browser says it is offline, look again this often instead of opening sockets that must fail. */
export const OFFLINE_POLL_MS = 1000;
/**
 * After this many attempts in a row that never opened, ask the server why (`checkRefused`): a browser sees
 * an upgrade refused with HTTP 403 (origin not allowed) only as a failed socket, like a network error.
 */
export const CHECK_AFTER_FAILURES = 3;
/** Commands kept while disconnected; past this the oldest are dropped (and logged). */
export const QUEUE_LIMIT = 500;
/**
 * How long a new socket waits for the serverInfo greeting before subscribing anyway (as to a server that does
 * not know `subscription2`): comet-server and Halley both greet at once, so this only matters on a broken link.
 */
export const GREETING_WAIT_MS = 2000;

export class Connection {
  /**
   * @param {object} o
   * @param {(failures: number) => string} o.urlFor the URL of the next attempt
   * @param {{WebSocket: any, setTimeout: Function, clearTimeout: Function, navigator?: any}} o.env
   * @param {(text: string) => void} o.onText one received text frame
   * @param {(connected: boolean) => void} o.onStatus connected once the server greeted the socket (or did not
   *   in GREETING_WAIT_MS), not at its open: the server links the connection to its user before it greets
   * @param {(level: number, ...args: any[]) => void} o.log
   * @param {Backoff} [o.backoff]
   * @param {number} [o.stableAfterMs]
   * @param {(url: string) => Promise<string|null>} [o.checkRefused] why the server refuses `url` for good
   *   (an error to show), or null when it does not or cannot say
   * @param {(pipes: string[]) => string} [o.subscriptionText] the command that subscribes `pipes` (default:
   *   the original's `subscription`; the tab group sends `subscription2` with positions to a Halley server)
   * @param {boolean} [o.waitGreeting] hold the subscription and queued commands of a new socket until
   *   greet() (the group calls it on the server's serverInfo, which says whether it knows `subscription2`),
   *   or GREETING_WAIT_MS
   * @param {(ev: any) => void} [o.onClose] the close event of a socket that was ours
   */
  constructor(o) {
    this.urlFor = o.urlFor;
    this.env = o.env;
    this.onText = o.onText;
    this.onStatus = o.onStatus;
    this.log = o.log;
    this.backoff = o.backoff || new Backoff();
    this.stableAfterMs = o.stableAfterMs ?? STABLE_AFTER_MS;
    this.checkRefused = o.checkRefused || null;
    this.subscriptionText = o.subscriptionText || subscriptionCommand;
    this.waitGreeting = Boolean(o.waitGreeting);
    this.onCloseHook = o.onClose || null;
    this.greeted = false;
    this.unopened = 0;
    this.ws = null;
    this.open = false;
    this.connected = false;
    this.stopped = true;
    this.fatal = false;
    this.failures = 0;
    this.pipes = [];
    this.sentPipes = null;
    this.queue = [];
    this.timers = { reconnect: null, stable: null, batch: null, greeting: null };
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.fatal = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    this.greeted = false;
    for (const name of Object.keys(this.timers)) this.clearTimer(name);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      detach(ws);
      try {
        ws.close(1000, "stop");
      } catch {
        // Already closing: nothing to do.
      }
    }
    this.setClosed();
  }

  /** The server refused us for a reason a retry cannot fix (bad URL, unknown dev_id): do not reconnect. */
  markFatal() {
    this.fatal = true;
  }

  isOpen() {
    return this.open;
  }

  /** The whole set of pipes this socket should be subscribed to. */
  setPipes(pipes) {
    this.pipes = [...pipes];
    if (!this.open || !this.greeted || this.timers.batch) return;
    this.timers.batch = this.env.setTimeout(() => {
      this.timers.batch = null;
      this.flushSubscription();
    }, SUBSCRIBE_BATCH_MS);
  }

  send(text) {
    if (this.open && this.greeted && this.ws) {
      this.ws.send(text);
      return true;
    }
    this.queue.push(text);
    if (this.queue.length > QUEUE_LIMIT) {
      const dropped = this.queue.shift();
      this.log(1, "offline queue full, dropped the oldest command:", dropped.split("\n")[0]);
    }
    return false;
  }

  connect() {
    if (this.stopped) return;
    const nav = this.env.navigator;
    if (nav && nav.onLine === false) {
      this.timers.reconnect = this.env.setTimeout(() => this.connect(), OFFLINE_POLL_MS);
      return;
    }
    const url = this.urlFor(this.failures);
    let ws;
    try {
      ws = new this.env.WebSocket(url);
    } catch (err) {
      // A URL the browser refuses outright (bad node option) will not get better by retrying.
      this.log(0, "cannot open a WebSocket to " + url, err);
      this.fatal = true;
      return;
    }
    this.ws = ws;
    this.log(2, "connecting to " + url);
    ws.onopen = () => this.onOpen(ws);
    ws.onmessage = (ev) => this.onMessage(ws, ev);
    ws.onclose = (ev) => this.onClose(ws, ev);
    ws.onerror = () => {
      // A close event always follows; reconnecting is decided there.
    };
  }

  onOpen(ws) {
    if (ws !== this.ws) return;
    this.unopened = 0;
    this.sentPipes = null;
    this.greeted = false;
    this.open = true;
    if (!this.waitGreeting) {
      this.greet();
      return;
    }
    this.timers.greeting = this.env.setTimeout(() => {
      this.timers.greeting = null;
      this.greet();
    }, GREETING_WAIT_MS);
  }

  /** The server said who it is (or did not in time): subscribe, then send what waited for the socket. */
  greet() {
    if (this.greeted || !this.open || !this.ws) return;
    this.greeted = true;
    this.clearTimer("greeting");
    // Connected from here, not from the socket's open: the server sends its greeting once it has linked
    // the connection to its user, so a private message sent after `isConnected()` turned true reaches it
    // (at the open it could still go to the user's other devices only, and never to this one).
    this.setStatus(true);
    this.flushSubscription();
    const ws = this.ws;
    const queued = this.queue;
    this.queue = [];
    for (const text of queued) ws.send(text);
  }

  /** Sends the subscription again even when the pipe set is unchanged (after a `gap`: "where do I stand?"). */
  resubscribe() {
    this.sentPipes = null;
    this.flushSubscription();
  }

  onMessage(ws, ev) {
    if (ws !== this.ws) return;
    if (!this.timers.stable) {
      this.timers.stable = this.env.setTimeout(() => {
        this.timers.stable = null;
        if (ws === this.ws && this.open) {
          this.backoff.reset();
          this.failures = 0;
        }
      }, this.stableAfterMs);
    }
    if (typeof ev.data === "string") this.onText(ev.data);
  }

  onClose(ws, ev) {
    if (ws !== this.ws) return;
    const wasOpen = this.open;
    detach(ws);
    this.ws = null;
    this.clearTimer("stable");
    this.clearTimer("batch");
    this.clearTimer("greeting");
    this.greeted = false;
    this.setClosed();
    if (this.onCloseHook) this.onCloseHook(ev);
    if (this.stopped) return;
    if (this.fatal) {
      this.log(0, "the server refused this connection; not reconnecting (see the error above)");
      return;
    }
    this.failures++;
    if (!wasOpen) this.noteUnopened(ws.url);
    const delay = this.backoff.next();
    this.log(1, `connection closed (code ${ev && ev.code}); reconnecting in ${delay} ms`);
    this.timers.reconnect = this.env.setTimeout(() => {
      this.timers.reconnect = null;
      this.connect();
    }, delay);
  }

  /** One more attempt that never opened; the CHECK_AFTER_FAILURES-th in a row asks the server why, once. */
  noteUnopened(url) {
    this.unopened++;
    if (this.unopened !== CHECK_AFTER_FAILURES || !this.checkRefused) return;
    this.checkRefused(url).then(
      (reason) => {
        if (!reason || this.stopped) return;
        this.log(0, reason);
        this.fatal = true;
        this.clearTimer("reconnect");
      },
      () => {
        // The server could not be asked (network down): keep retrying as before.
      },
    );
  }

  flushSubscription() {
    if (!this.open || !this.greeted || !this.ws) return;
    const key = this.pipes.join("\n");
    if (this.sentPipes === key) return;
    // A fresh socket is subscribed to nothing: an empty list needs no frame.
    if (this.sentPipes === null && this.pipes.length === 0) return;
    this.sentPipes = key;
    this.ws.send(this.subscriptionText(this.pipes));
  }

  setClosed() {
    this.open = false;
    this.setStatus(false);
  }

  /** Tells the owner once per change: connected (greeted) or not. */
  setStatus(connected) {
    if (this.connected === connected) return;
    this.connected = connected;
    this.onStatus(connected);
  }

  clearTimer(name) {
    if (this.timers[name]) {
      this.env.clearTimeout(this.timers[name]);
      this.timers[name] = null;
    }
  }
}

function detach(ws) {
  ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
}
