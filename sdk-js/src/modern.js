// The modern API for new pages: one object per connection, listeners that return their own unsubscribe
// function, and promises (with timeouts) for everything the server answers.
//
//   const comet = new Halley({ devId: 1, userId: 5, userKey: token, node: "comet.example.com" });
//   const off = comet.on("chat.message", (m) => show(m.data));
//   await comet.publish("web_chat", "message", { text: "hi" });

import { Client } from "./client.js";
import { splitSendTarget, sendTargetError } from "./names.js";
import { webPipeCommand, pipeLogCommand, pipeCountCommand, trackPipeUsersCommand, userDataCommand } from "./commands.js";

export const DEFAULT_TIMEOUT_MS = 10000;

export class Halley {
  /**
   * @param {object} options devId, userId, userKey, node (or the original's dev_id, user_id, user_key...)
   * @param {object} [env] browser stand-ins (tests)
   */
  constructor(options, env) {
    this.client = new Client(env);
    this.client.start(options);
  }

  /** Same name forms as the original's subscription(); returns the function that unsubscribes. */
  on(name, callback) {
    const id = this.client.subscribe(name, callback);
    if (id === false) throw new Error("halley: invalid subscription " + JSON.stringify(String(name)));
    return () => this.client.unsubscribe(id);
  }

  /** Publishes to a web_ / @web_ / webauth_ pipe; resolves with the server's delivery report. */
  publish(pipe, event, data, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    const t = splitSendTarget(pipe, event, data, data === undefined ? 2 : 3);
    const problem = sendTargetError(t.pipe, t.event);
    if (problem) return Promise.reject(new Error("halley: " + problem));
    const text = JSON.stringify(t.msg);
    return this.request(`publish to ${t.pipe}`, timeoutMs, (done) => {
      const cancel = this.client.waitAnswer(t.pipe, text, (payload) => done(payload.data));
      this.client.send(webPipeCommand(t.pipe, t.event, text), { send: { pipe: t.pipe, event: t.event, text } });
      return cancel;
    });
  }

  /** How many connections are subscribed to a web_ or track_ pipe. */
  countUsers(pipe, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    return this.ask(`count users in ${pipe}`, timeoutMs, (marker) => pipeCountCommand(pipe, marker)).then(
      (data) => (Array.isArray(data) ? Number(data[1]) : Number(data && data.user_in_pipe)),
    );
  }

  /** The `{user_id, uuid}` of every subscriber of a track_ pipe. */
  trackUsers(pipe, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    if (!/^track_/.test(pipe)) return Promise.reject(new Error("halley: trackUsers needs a track_ pipe"));
    return this.ask(`track users of ${pipe}`, timeoutMs, (marker) => trackPipeUsersCommand(pipe, marker));
  }

  /** The users_data text stored for a user ("" when none). */
  userData(userId, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    if (!/^[0-9]+$/.test(String(userId))) return Promise.reject(new Error("halley: userData needs a numeric id"));
    return this.ask(`user data of ${userId}`, timeoutMs, (marker) => userDataCommand(userId, marker)).then((d) =>
      d && typeof d === "object" ? d.user_data : d,
    );
  }

  /** Replays the pipe's stored history to `callback` (history: true in server_info), then its new messages. */
  history(pipe, callback) {
    const off = this.on(pipe, callback);
    this.client.send(pipeLogCommand(pipe, this.client.newMarker()), { log: pipe });
    return off;
  }

  /** `callback(authorized)` on every change; returns the function that removes it. */
  onAuth(callback) {
    const a = this.client.authListeners;
    const ids = [a.success.connect("auth", () => callback(true)), a.fail.connect("auth", () => callback(false))];
    return () => {
      a.success.disconnectId(ids[0]);
      a.fail.disconnectId(ids[1]);
    };
  }

  /** `callback(connected)` on every change; returns the function that removes it. */
  onStatus(callback) {
    const id = this.client.statusListeners.connect("status", callback);
    return () => this.client.statusListeners.disconnectId(id);
  }

  /** `fn(recovered, position)` after every (re)subscribe of `pipe`; returns its remover. */
  onRecovery(pipe, fn) {
    return this.client.onRecovery(pipe, fn);
  }

  /** `{epoch, offset}` of the last message of `pipe` processed, or null. */
  getPosition(pipe) {
    return this.client.getPosition(pipe);
  }

  get authorized() {
    return this.client.authorized;
  }

  get connected() {
    return this.client.connected;
  }

  /** true when this tab holds the socket shared by the browser's tabs. */
  get leader() {
    return this.client.leader === true;
  }

  get uuid() {
    return this.client.getUUID();
  }

  /** Leaves the connection (another tab takes the socket over if this one held it). */
  close() {
    this.client.stop();
  }

  ask(what, timeoutMs, command) {
    return this.request(what, timeoutMs, (done) => {
      const marker = this.client.newMarker();
      const cancel = this.client.onceMarker(marker, (payload) => done(payload.data));
      this.client.send(command(marker), { marker });
      return cancel;
    });
  }

  /** Runs `start(done)` and settles with what `done` gets, or rejects after `timeoutMs`. */
  request(what, timeoutMs, start) {
    const env = this.client.env;
    return new Promise((resolve, reject) => {
      let timer = null;
      const cancel = start((value) => {
        env.clearTimeout(timer);
        resolve(value);
      });
      timer = env.setTimeout(() => {
        cancel();
        reject(new Error(`halley: no answer to "${what}" within ${timeoutMs} ms`));
      }, timeoutMs);
    });
  }
}
