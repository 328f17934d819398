// The comet-server JavaScript API 4.08, method for method, so that pages written for it work unchanged:
// CometServer().start({dev_id, user_id, user_key, node}), subscription("pipe.event", cb), web_pipe_send(...).
// Where the original misbehaved (see docs/reference-cppcomet.md 3) this keeps the signature and fixes the
// behaviour: auth callbacks run after isAuthorized() changed, frames with apostrophes are not dropped, one
// socket is shared by the tabs, reconnects back off.

import { Client } from "./client.js";
import { API_VERSION, SDK_VERSION } from "./version.js";
import { splitSendTarget, sendTargetError } from "./names.js";
import {
  webPipeCommand,
  pipeLogCommand,
  pipeCountCommand,
  trackPipeUsersCommand,
  userDataCommand,
  statisticsCommand,
} from "./commands.js";
import { randomString } from "./random.js";
import { mergeOptions } from "./options.js";

export class CometServerApi {
  /**
   * @param {object} [opt] start options to remember (the original's constructor argument)
   * @param {object} [env] browser stand-ins (tests)
   */
  constructor(opt, env) {
    this.client = new Client(env);
    this.client.options = mergeOptions({}, opt);
    this.version = API_VERSION;
    this.sdkVersion = SDK_VERSION;
  }

  // ---- connection ----

  /** @param {Function} [callBack] called once, when the connection is first established */
  start(opt, callBack) {
    if (typeof callBack === "function") {
      const c = this.client;
      if (c.connected) callBack();
      else {
        const id = c.statusListeners.connect("status", (up) => {
          if (!up) return;
          c.statusListeners.disconnectId(id);
          callBack();
        });
      }
    }
    return this.client.start(opt);
  }

  stop() {
    this.client.stop();
  }

  restart(opt) {
    return this.client.restart(opt);
  }

  // ---- subscriptions ----

  subscription(name, callback) {
    if (name === undefined) return false;
    return this.client.subscribe(name, callback);
  }

  unsubscription(sigId) {
    if (sigId !== undefined && !sigId) return false;
    return this.client.unsubscribe(sigId);
  }

  unsubscriptionAll() {
    return this.client.unsubscribeAll();
  }

  // ---- publishing ----

  /** web_pipe_send(pipe, event, msg) or web_pipe_send("pipe.event", msg); msg is sent as JSON. */
  web_pipe_send(pipe_name, event_name, msg) {
    const t = splitSendTarget(pipe_name, event_name, msg, arguments.length);
    if (t.msg === undefined) return false;
    const problem = sendTargetError(t.pipe, t.event);
    if (problem) {
      this.client.log.error(problem);
      return undefined;
    }
    const text = JSON.stringify(t.msg);
    return this.client.send(webPipeCommand(t.pipe, t.event, text), { send: { pipe: t.pipe, event: t.event, text } });
  }

  /**
   * Sends `count` times, `interval` ms apart, with an `_cometApi_uuid` field by which receivers drop the
   * repeats: at most one copy is delivered. Only an object message can carry that field; anything else is
   * sent once.
   */
  multi_web_pipe_send(pipe_name, event_name, msg, count, interval) {
    count = count || 3;
    interval = interval || 1000;
    if (msg === null || typeof msg !== "object") {
      this.client.log.warn("multi_web_pipe_send needs an object message to de-duplicate; sent once.");
      return this.web_pipe_send(pipe_name, event_name, msg);
    }
    msg._cometApi_uuid = "jsapi" + randomString(11, undefined, this.client.env.random);
    for (let i = 1; i < count; i++) {
      this.client.env.setTimeout(() => this.web_pipe_send(pipe_name, event_name, msg), i * interval);
    }
    return this.web_pipe_send(pipe_name, event_name, msg);
  }

  // ---- requests with an answer ----

  /** The pipe's stored history, delivered to `callBack` (which also stays subscribed to the pipe). */
  get_pipe_log(pipe_name, callBack) {
    if (!pipe_name) {
      this.client.log.error("get_pipe_log: the pipe name is required");
      return false;
    }
    if (callBack !== undefined && this.client.subscribe(pipe_name, callBack) === false) return false;
    const pipe = String(pipe_name).split(".")[0];
    return this.client.send(pipeLogCommand(pipe, this.client.newMarker()), { log: pipe });
  }

  count_users_in_pipe(pipe_name, callBack) {
    const marker = this.client.newMarker();
    if (typeof callBack === "function") this.client.onceMarker(marker, callBack);
    return this.client.send(pipeCountCommand(pipe_name, marker), { marker });
  }

  getTrackPipeUsers(pipe_name, callBack) {
    if (!/^track_/.test(pipe_name)) {
      this.client.log.error(`Invalid channel name \`${pipe_name}\`. The channel should begin with track_`);
      return undefined;
    }
    const marker = this.client.newMarker();
    if (typeof callBack === "function") this.client.onceMarker(marker, callBack);
    return this.client.send(trackPipeUsersCommand(pipe_name, marker), { marker });
  }

  getUserData(user_id, callBack) {
    if (!user_id || /[^0-9]/.test(String(user_id))) {
      this.client.log.error(`Invalid user_id=\`${user_id}\`. The user_id should be an integer`);
      return undefined;
    }
    if (typeof callBack !== "function") return undefined;
    const marker = this.client.newMarker();
    this.client.onceMarker(marker, callBack);
    return this.client.send(userDataCommand(user_id, marker), { marker });
  }

  sendStatistics(plugin_name, plugin_version, plugin_data) {
    const href = this.client.env.location ? this.client.env.location.href : "";
    return this.client.send(
      statisticsCommand({
        url: href,
        dev_id: this.client.options.dev_id,
        version: API_VERSION,
        plugin: { name: plugin_name, version: plugin_version, data: plugin_data },
      }),
    );
  }

  // ---- authorization ----

  /** Called on every change to authorized (after isAuthorized() returns true). */
  onAuthSuccess(callback) {
    this.client.authListeners.success.connect("auth", () => callback());
  }

  /** Called on every change to not authorized. The misspelling is the original's. */
  onAuthFalill(callback) {
    this.client.authListeners.fail.connect("auth", () => callback());
  }

  onAuthFail(callback) {
    this.onAuthFalill(callback);
  }

  /** true, false, or undefined before the server has answered. */
  isAuthorized() {
    return this.client.authorized;
  }

  // ---- positions and recovery (Halley) ----

  /**
   * `fn(recovered, position)` after every (re)subscribe of `pipe`: recovered true when every message since the
   * last one processed was delivered (replayed in order), false when some were lost (first subscribe, past the
   * server's window, a server restart). Returns a function that removes the listener.
   */
  onRecovery(pipe, fn) {
    return this.client.onRecovery(pipe, fn);
  }

  /** `{epoch, offset}` of the last message of `pipe` processed, or null (not positioned yet). */
  getPosition(pipe) {
    return this.client.getPosition(pipe);
  }

  // ---- state ----

  /** true in the tab that holds the shared socket, false in the others, undefined before the election. */
  isMaster() {
    return this.client.leader;
  }

  isConnected() {
    return this.client.connected;
  }

  getUserId() {
    return this.client.options.user_id;
  }

  getUserKey() {
    return this.client.options.user_key;
  }

  /** The hash the server holds for this user (sent with the authorization result). */
  getRealUserKey() {
    return this.client.realUserKey;
  }

  setRealUserKey(key) {
    this.client.realUserKey = key;
    return true;
  }

  getDevId() {
    return this.client.options.dev_id;
  }

  getUUID() {
    return this.client.getUUID();
  }

  getTabUUID() {
    return this.client.tabId;
  }

  getCustomString() {
    return this.client.newMarker();
  }

  /** Always WebSocket: the long-polling fallback of the original is gone from the server too. */
  UseWebSocket() {
    return true;
  }

  UseWss(use) {
    this.client.options.wss = use === undefined ? undefined : Boolean(use);
    return this.isUseWss();
  }

  isUseWss() {
    const o = this.client.options.wss;
    if (o !== undefined) return Boolean(o);
    const loc = this.client.env.location;
    return Boolean(loc && loc.protocol === "https:");
  }

  getLogLevel() {
    return this.client.log.getLevel();
  }

  setLogLevel(level) {
    this.client.log.setLevel(level);
  }
}
