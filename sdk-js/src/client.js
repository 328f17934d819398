// One page's client: its callbacks, its pipes, its authorization state, and its membership in the tab group
// that owns the socket. Both public styles (the original's CometServer() API in compat.js and the modern
// promise API in modern.js) are thin layers over this class.

import { browserEnv } from "./env.js";
import { Backoff } from "./backoff.js";
import { TabGroup } from "./group.js";
import { SignalBus } from "./signals.js";
import { RecentIds } from "./dedup.js";
import { buildUrl, pickNode, useSecure } from "./url.js";
import { mergeOptions, nodeList, optionsError, groupKey } from "./options.js";
import { parseSubscriptionName, ALL_SIGNAL, answeredPipe } from "./names.js";
import { isServerInfo, isErrorFrame, authorizedOf, errorText, toPayload, frameEvent } from "./frames.js";
import { randomString, UUID_ALPHABET } from "./random.js";
import { Logger } from "./log.js";
import { Positions, isSubscribedFrame, isGapFrame } from "./positions.js";
import { Inbox, INBOX_KEY, isMsgRecoveryFrame, msgAfterParam } from "./inbox.js";

/** sessionStorage key of this tab's positions, so that a reload resumes where the page was. */
export const POSITIONS_KEY = "halley_positions";
/** localStorage key prefix (+ the group key) of the last private message a tab of this browser processed. */
const MSG_LAST_KEY = "halley_msg_last:";

export class Client {
  /** @param {object} [env] overrides of browserEnv() (tests) */
  constructor(env) {
    this.env = { ...browserEnv(), ...(env || {}) };
    this.log = new Logger(this.env);
    this.bus = new SignalBus((what, err) => this.log.error(what + ":", err));
    this.recent = new RecentIds({ now: this.env.now });
    this.options = {};
    this.tabId = randomString(16, undefined, this.env.random);
    this.pipeOf = new Map(); // subscription id -> server pipe
    this.subscriptionIds = new Set(); // what unsubscriptionAll() removes (not pending answers)
    this.beforeStart = []; // commands given before start(), sent once there is a connection
    this.group = null;
    this.started = false;
    this.authorized = undefined;
    this.realUserKey = undefined;
    this.connected = false;
    this.leader = undefined;
    this.authListeners = { success: new SignalBus(this.bus.onError), fail: new SignalBus(this.bus.onError) };
    this.statusListeners = new SignalBus(this.bus.onError);
    this.answerWaiters = []; // {pipe, text, fn} for web_pipe_send promises, in send order
    this.pageHooked = false;
    this.signature = null; // what the current group was started with
    this.positions = new Positions(); // per pipe, the last message handed to callbacks (dedupe, getPosition)
    this.recoveryListeners = new Map(); // pipe -> Set of fn(recovered, position)
    this.loadPositions();
    this.inbox = new Inbox(); // private messages: the last id processed (resume) and the recent ones (dedupe)
    this.loadInbox();
  }

  // ---- lifecycle -------------------------------------------------------------------------------------

  /**
   * @param {object} [opt] merged into the options given before
   * @param {boolean} [force] reconnect even when nothing changed (restart)
   * @returns {boolean} false when the options cannot work (the reason is logged)
   */
  start(opt, force = false) {
    this.options = mergeOptions(this.options, opt);
    if (this.options.logLevel !== undefined) this.log.setLevel(this.options.logLevel);
    const nodes = nodeList(this.options, this.env.location);
    const problem = optionsError(this.options, nodes);
    if (problem) {
      this.log.error(problem);
      return false;
    }
    const key = groupKey(this.options, nodes);
    this.getUUID();
    const signature = [key, this.options.share, this.options.wss, this.options.uuid].join("|");
    // Pages often call start() from several scripts with the same options: keep the connection they share.
    if (this.group && this.started && !force && signature === this.signature) return true;
    if (this.group) this.group.leave();
    this.signature = signature;
    this.started = true;
    this.groupKey = key;
    this.wasFollower = false;
    this.hookPage();
    const secure = useSecure(this.options.wss, this.env.location);
    this.group = new TabGroup({
      key,
      tabId: this.tabId,
      env: this.env,
      share: this.options.share,
      backoff: new Backoff(this.options.backoff || {}, this.env.random),
      userId: this.options.user_id,
      urlFor: (failures) =>
        buildUrl({
          node: pickNode(nodes, this.options.user_id, failures),
          secure,
          userKey: this.options.user_key,
          userId: this.options.user_id,
          devId: this.options.dev_id,
          uuid: this.getUUID(),
        }) + (this.options.recovery === false ? "" : msgAfterParam(this.msgAfter())),
      checkRefused: (url) => originRefused(this.env, url, this.options.dev_id),
      onFrame: (frame) => this.onFrame(frame),
      recovery: this.options.recovery,
      positions: () => this.positions.snapshot(),
      onStatus: (connected) => this.setConnected(connected),
      onRole: (leader) => {
        if (leader === false) this.wasFollower = true;
        this.leader = leader;
      },
      log: (level, ...args) => this.log.at(level, ...args),
    });
    this.group.setPipes(this.serverPipes());
    this.group.join();
    const waiting = this.beforeStart;
    this.beforeStart = [];
    for (const { text, route } of waiting) this.group.send(text, route);
    return true;
  }

  /** Leaves the socket: if this tab held it, another tab of the group takes it over. */
  stop() {
    this.saveInbox();
    this.started = false;
    if (this.group) this.group.leave();
    this.group = null;
    this.leader = undefined;
    this.setConnected(false);
  }

  /** New options (for example another user_key) and a new connection; before start() it is start(). */
  restart(opt) {
    return this.start(opt, true);
  }

  hookPage() {
    if (this.pageHooked || !this.env.addEventListener) return;
    this.pageHooked = true;
    this.env.addEventListener("pagehide", () => {
      this.savePositions();
      this.saveInbox();
      if (this.group) this.group.hide();
    });
    this.env.addEventListener("pageshow", (ev) => ev && ev.persisted && this.group && this.group.show());
  }

  // ---- subscriptions ---------------------------------------------------------------------------------

  /**
   * @param {string|Function} name any of the original's forms (see names.js), or a function for everything
   * @param {Function} [callback]
   * @returns {string|false} the subscription id
   */
  subscribe(name, callback) {
    if (typeof name === "function") return this.track(this.bus.connect(ALL_SIGNAL, name));
    if (typeof name === "string" && name.includes("\n")) {
      // The original accepted a newline-separated list (its tabs forwarded subscriptions this way).
      let last = false;
      for (const one of name.split("\n")) last = this.subscribe(one, callback);
      return last;
    }
    const parsed = parseSubscriptionName(name);
    if (parsed.kind === "invalid") {
      this.log.error(parsed.error);
      return false;
    }
    const fn = typeof callback === "function" ? callback : () => {};
    const id = this.track(this.bus.connect(parsed.signal, fn, { skipMarked: parsed.kind !== "all" }));
    if (parsed.kind === "pipe") {
      this.pipeOf.set(id, parsed.pipe);
      this.pipesChanged();
    }
    return id;
  }

  /** @returns {boolean} */
  unsubscribe(id) {
    if (id === undefined) {
      this.log.warn("unsubscription() needs the id that subscription() returned; unsubscriptionAll() drops all.");
      return false;
    }
    const removed = this.bus.disconnectId(id);
    this.subscriptionIds.delete(id);
    if (this.pipeOf.delete(id)) this.pipesChanged();
    return removed;
  }

  unsubscribeAll() {
    for (const id of this.subscriptionIds) this.bus.disconnectId(id);
    this.subscriptionIds.clear();
    const had = this.pipeOf.size > 0;
    this.pipeOf.clear();
    if (had) this.pipesChanged();
    return true;
  }

  track(id) {
    this.subscriptionIds.add(id);
    return id;
  }

  /** Pipes the server must send us: those some callback still listens to, each once, in first-use order. */
  serverPipes() {
    return [...new Set(this.pipeOf.values())];
  }

  pipesChanged() {
    if (this.group) this.group.setPipes(this.serverPipes());
  }

  // ---- commands --------------------------------------------------------------------------------------

  /** Hands a command to the socket (sent now, or when the connection is back). */
  send(text, route) {
    if (this.group) {
      this.group.send(text, route);
      return true;
    }
    // The original queued commands given before start() too; keep a bounded number of them.
    if (this.beforeStart.length >= 100) {
      this.log.warn("not started: dropped", text.split("\n")[0]);
      return false;
    }
    this.beforeStart.push({ text, route });
    return true;
  }

  newMarker() {
    return randomString(10, undefined, this.env.random);
  }

  /** Calls `fn` once with the answer carrying `marker`; returns a function that cancels the wait. */
  onceMarker(marker, fn) {
    const id = this.bus.connect(marker, fn, { once: true });
    return () => this.bus.disconnectId(id);
  }

  /**
   * Calls `fn` with the delivery report of a web_pipe_send of `text` to `pipe`; returns a function that
   * cancels the wait.
   */
  waitAnswer(pipe, text, fn) {
    const waiter = { pipe: pipe.replace(/^@/, ""), text, fn };
    this.answerWaiters.push(waiter);
    return () => {
      const i = this.answerWaiters.indexOf(waiter);
      if (i >= 0) this.answerWaiters.splice(i, 1);
    };
  }

  // ---- incoming --------------------------------------------------------------------------------------

  onFrame(frame) {
    if (isServerInfo(frame)) {
      this.realUserKey = String(frame.data ?? "").replace(/ /g, "_");
      this.setAuthorized(authorizedOf(frame));
      return;
    }
    if (frame.data === undefined) return;
    if (isErrorFrame(frame)) this.log.error("server error: " + errorText(frame));
    if (frame.jscode !== undefined) {
      // The original eval()ed this field; code from the network is never run here.
      this.log.warn("ignored a frame carrying jscode");
      return;
    }
    if (isSubscribedFrame(frame)) {
      this.onSubscribed(frame.pipe, frame.data);
      return;
    }
    if (isGapFrame(frame)) return; // the leader resubscribes; not a message
    if (isMsgRecoveryFrame(frame)) {
      this.onMsgRecoveryFailed();
      return;
    }
    if (!this.inbox.accept(frame)) return; // a private message already handed to callbacks
    if (frame.pipe === "msg" && frame.id === this.inbox.last) this.shareLastMsg();
    if (!this.positions.accept(frame)) return; // already handed to callbacks (a resubscribe repeated it)
    const payload = toPayload(frame);
    if (frame.uuid !== undefined && !this.recent.firstTime("f:" + frame.uuid)) return;
    const data = payload.data;
    if (data && typeof data === "object" && data._cometApi_uuid !== undefined) {
      if (!this.recent.firstTime("m:" + data._cometApi_uuid)) return;
      delete data._cometApi_uuid;
    }
    this.emit(frame, payload);
  }

  /** The original's signal order: pipe, pipe.event, the marker's one-shot callback, then catch-all. */
  emit(frame, payload) {
    const marked = frame.marker !== undefined;
    const event = frameEvent(frame);
    const hasEvent = typeof event === "string" || typeof event === "number";
    if (frame.pipe !== undefined) {
      this.bus.emit(frame.pipe, payload, marked);
      if (hasEvent) this.bus.emit(frame.pipe + "." + event, payload, marked);
    } else {
      if (hasEvent) this.bus.emit("msg." + event, payload, marked);
      this.bus.emit("msg", payload, marked);
    }
    if (marked) this.bus.emit(String(frame.marker), payload);
    const answered = answeredPipe(frame.pipe);
    if (answered !== null) this.resolveAnswer(answered, payload);
    this.bus.emit(ALL_SIGNAL, payload);
  }

  resolveAnswer(pipe, payload) {
    const message = payload.data && typeof payload.data === "object" ? payload.data.message : undefined;
    let i = this.answerWaiters.findIndex((w) => w.pipe === pipe && w.text === message);
    if (i < 0) i = this.answerWaiters.findIndex((w) => w.pipe === pipe);
    if (i < 0) return;
    const [waiter] = this.answerWaiters.splice(i, 1);
    waiter.fn(payload);
  }

  // ---- positions and recovery ----------------------------------------------------------------------

  /** A (re)subscribe of `pipe` answered: the position is the server's, then the page is told. */
  onSubscribed(pipe, data) {
    this.positions.subscribed(pipe, data);
    this.savePositions();
    const fns = this.recoveryListeners.get(pipe);
    if (!fns) return;
    for (const fn of [...fns]) {
      try {
        fn(data.recovered, { epoch: data.epoch, offset: data.offset });
      } catch (err) {
        this.log.error("onRecovery callback:", err);
      }
    }
  }

  /** @returns {() => void} removes the listener */
  onRecovery(pipe, fn) {
    const name = String(pipe);
    if (!this.recoveryListeners.has(name)) this.recoveryListeners.set(name, new Set());
    const fns = this.recoveryListeners.get(name);
    fns.add(fn);
    return () => {
      fns.delete(fn);
      if (!fns.size) this.recoveryListeners.delete(name);
    };
  }

  getPosition(pipe) {
    return this.positions.get(String(pipe));
  }

  /** The server could not replay the private messages since the last one processed: `onRecovery("msg")`. */
  onMsgRecoveryFailed() {
    for (const fn of [...(this.recoveryListeners.get("msg") || [])]) {
      try {
        fn(false, null);
      } catch (err) {
        this.log.error("onRecovery callback:", err);
      }
    }
  }

  /**
   * The private message to resume after: the last one this tab processed; for a tab that took the socket over
   * from another tab before it processed any, the last one a tab of this browser processed (localStorage), so
   * that a hand-over right after the tab joined does not lose what came meanwhile.
   */
  msgAfter() {
    if (this.inbox.last || !this.wasFollower) return this.inbox.last;
    try {
      return this.env.storage.getItem(MSG_LAST_KEY + this.groupKey) || "";
    } catch {
      return "";
    }
  }

  shareLastMsg() {
    try {
      this.env.storage.setItem(MSG_LAST_KEY + this.groupKey, this.inbox.last);
    } catch {
      // Full or blocked: a hand-over to a tab that processed nothing resumes from nothing.
    }
  }

  loadInbox() {
    const session = this.env.session;
    if (!session) return;
    try {
      this.inbox.restore(JSON.parse(session.getItem(INBOX_KEY) || "null"));
    } catch {
      // Unreadable or not JSON: start without a last id.
    }
  }

  saveInbox() {
    const session = this.env.session;
    if (!session) return;
    try {
      session.setItem(INBOX_KEY, JSON.stringify(this.inbox.snapshot()));
    } catch {
      // Full or blocked: a reload then starts without a last id (nothing replayed, the queue still drained).
    }
  }

  loadPositions() {
    const session = this.env.session;
    if (!session) return;
    try {
      this.positions.merge(JSON.parse(session.getItem(POSITIONS_KEY) || "{}"));
    } catch {
      // Unreadable or not JSON: start without positions.
    }
  }

  savePositions() {
    const session = this.env.session;
    if (!session) return;
    try {
      session.setItem(POSITIONS_KEY, JSON.stringify(this.positions.snapshot()));
    } catch {
      // Full or blocked: a reload then starts without positions, as if the option did not exist.
    }
  }

  // ---- state -----------------------------------------------------------------------------------------

  /** Updates the state first, then calls the listeners (the original called them before the update). */
  setAuthorized(value) {
    const changed = this.authorized !== value;
    this.authorized = value;
    if (!changed) return;
    (value ? this.authListeners.success : this.authListeners.fail).emit("auth", value);
  }

  setConnected(connected) {
    if (this.connected === connected) return;
    this.connected = connected;
    this.statusListeners.emit("status", connected);
  }

  /** 32 characters kept in localStorage `comet_server_uuid`, as the original, unless the `uuid` option is set. */
  getUUID() {
    if (this.options.uuid) return String(this.options.uuid);
    const storage = this.env.storage;
    let uuid = storage.getItem("comet_server_uuid");
    if (!uuid || !/^[A-Za-z0-9_-]{32}$/.test(uuid)) {
      uuid = randomString(32, UUID_ALPHABET, this.env.random);
      storage.setItem("comet_server_uuid", uuid);
    }
    this.options.uuid = uuid;
    return uuid;
  }
}

/**
 * Asks the node of a failing socket URL whether this page's origin is refused for `devId` (the tenant's
 * "Allowed origins" dashboard setting, answered by `/info?dev_id=`); the error to show, or null.
 */
export async function originRefused(env, wsUrl, devId) {
  if (typeof env.fetch !== "function") return null;
  const at = wsUrl.indexOf("/ws/sesion=");
  if (at < 0) return null;
  const base = wsUrl.slice(0, at).replace(/^ws/, "http");
  const res = await env.fetch(base + "/info?dev_id=" + encodeURIComponent(String(devId)));
  if (!res || !res.ok) return null;
  const info = await res.json();
  if (!info || info.origin_allowed !== false) return null;
  const origin = env.location && env.location.origin ? env.location.origin : "this page's origin";
  return (
    `${origin} is not in the "Allowed origins" of dev_id ${devId} (dashboard: Settings), so the server ` +
    "refuses its WebSocket connections (HTTP 403); not reconnecting. Add the origin there (or empty the list) " +
    "and reload the page."
  );
}
