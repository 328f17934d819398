// Which tab a received frame is for, when several tabs share one socket (run by the leader tab).
//
// With one socket per tab (the original 4.x), answers reached only the tab that asked. Sharing the socket
// must keep that, and must also give each tab what its own socket would have given it:
//  - answers carrying a marker (pipe_count, track_pipe_users, user_data) go to the tab that sent the marker;
//  - the `_answer_to_<pipe>` delivery report of a web_pipe_send goes to the sending tab, and the other tabs
//    get the message itself: the server does not echo a message to the connection that sent it, but with
//    separate sockets those tabs would have received it;
//  - history replayed by pipe_log (frames with fromQueue) goes to the tabs that asked for it;
//  - everything else goes to every tab.
// Deliveries: {to: tabId} one tab, {except: tabId} all but one, {} all.

import { answeredPipe } from "./names.js";

/** How long a request's routing entry waits for its answer. */
export const PENDING_TTL_MS = 30000;
/** How long after a pipe_log request replayed frames of that pipe go to the asking tabs only. */
export const HISTORY_WINDOW_MS = 10000;

export class Router {
  constructor({ now = () => Date.now() } = {}) {
    this.now = now;
    this.markers = new Map(); // marker -> {tab, at}
    this.sends = []; // {tab, pipe, event, text, anonymous, at} in send order
    this.logs = new Map(); // pipe -> {tabs: Set, until}
  }

  /**
   * Remembers who sent a command that will be answered.
   * @param {string} tab
   * @param {{marker?: string, send?: {pipe: string, event: string, text: string}, log?: string}} route
   */
  noteSend(tab, route) {
    if (!route) return;
    const at = this.now();
    this.prune(at);
    if (route.marker) this.markers.set(route.marker, { tab, at });
    if (route.send) {
      const anonymous = route.send.pipe.startsWith("@");
      const pipe = anonymous ? route.send.pipe.slice(1) : route.send.pipe;
      this.sends.push({ tab, pipe, event: route.send.event, text: route.send.text, anonymous, at });
    }
    if (route.log) {
      const entry = this.logs.get(route.log) || { tabs: new Set(), until: 0 };
      entry.tabs.add(tab);
      entry.until = at + HISTORY_WINDOW_MS;
      this.logs.set(route.log, entry);
    }
  }

  /** A tab left: its pending answers have nobody to go to. */
  forget(tab) {
    for (const [marker, entry] of this.markers) if (entry.tab === tab) this.markers.delete(marker);
    this.sends = this.sends.filter((s) => s.tab !== tab);
    for (const [pipe, entry] of this.logs) {
      entry.tabs.delete(tab);
      if (entry.tabs.size === 0) this.logs.delete(pipe);
    }
  }

  /**
   * @param {object} frame a parsed server frame
   * @param {number} senderId the user_id the server puts on this connection's web_pipe_send messages
   * @returns {Array<{to?: string, except?: string, frame: object}>}
   */
  route(frame, senderId) {
    const now = this.now();
    this.prune(now);
    if (frame.marker !== undefined && this.markers.has(frame.marker)) {
      const { tab } = this.markers.get(frame.marker);
      this.markers.delete(frame.marker);
      return [{ to: tab, frame }];
    }
    const answered = answeredPipe(frame.pipe);
    if (answered !== null) return this.routeAnswer(frame, answered, senderId);
    if (frame.fromQueue === true && frame.pipe !== "msg") {
      const entry = this.logs.get(frame.pipe);
      if (entry && entry.until > now) return [...entry.tabs].map((tab) => ({ to: tab, frame }));
    }
    return [{ frame }];
  }

  routeAnswer(frame, pipe, senderId) {
    const message = frame.data && typeof frame.data === "object" ? frame.data.message : undefined;
    let i = this.sends.findIndex((s) => s.pipe === pipe && s.text === message);
    if (i < 0) i = this.sends.findIndex((s) => s.pipe === pipe);
    if (i < 0) return [{ frame }];
    const [sent] = this.sends.splice(i, 1);
    const echo = {
      data: sent.text,
      event: sent.event,
      message_send_time: frame.message_send_time,
      pipe: sent.pipe,
      user_id: sent.anonymous ? 0 : senderId,
    };
    return [{ to: sent.tab, frame }, { except: sent.tab, frame: echo }];
  }

  prune(now) {
    for (const [marker, entry] of this.markers) if (now - entry.at > PENDING_TTL_MS) this.markers.delete(marker);
    while (this.sends.length && now - this.sends[0].at > PENDING_TTL_MS) this.sends.shift();
    for (const [pipe, entry] of this.logs) if (entry.until <= now) this.logs.delete(pipe);
  }
}
