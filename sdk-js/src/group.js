// The tabs of one browser that connect with the same node, dev_id, user_id and user_key form a group that
// shares one WebSocket. The leader (see election.js) owns the socket; all tabs talk over a BroadcastChannel:
//   follower -> leader  hello            "tell me the state" (answered with status and the last serverInfo)
//                       pipes {pipes, positions?}  this tab's pipes; the socket subscribes to the union
//                                        (positions: what the tab processed, so a new leader resumes there)
//                       send {text, route}  a command to write to the socket
//                       bye              this tab leaves
//   leader -> all       leader           a new leader: send me your pipes and hello again
//                       status {connected}
//                       frame {frame, to?, except?}  a received frame, routed by router.js
// BroadcastChannel does not deliver a tab's messages to itself, so the leader handles its own share locally.

import { Connection } from "./socket.js";
import { Election } from "./election.js";
import { Router } from "./router.js";
import { errorCode, FATAL_CONNECT_CODES, isServerInfo, authorizedOf, parseFrames } from "./frames.js";
import { Positions, isSubscribedFrame, isGapFrame } from "./positions.js";
import { subscriptionCommand, subscription2Command } from "./commands.js";

/** Pipe names `subscription2` accepts; another name would get the whole command refused and the socket closed. */
const POSITIONED_PIPE = /^[A-Za-z0-9_-]{2,63}$/;

/** The serverInfo greeting of a server that knows `subscription2` (`"server":"5.7.99-Halley-<version>"`). */
export function knowsSubscription2(serverInfo) {
  return typeof serverInfo.server === "string" && serverInfo.server.includes("-Halley-");
}

/**
 * Part of the channel and lock names: tabs running an SDK that speaks another version of the messages above
 * (a page not reloaded since a deploy) form their own group instead of misreading each other.
 */
export const GROUP_PROTOCOL = "halley-tabs-1:";

export class TabGroup {
  /**
   * @param {object} o
   * @param {string} o.key identifies the connection; tabs with the same key share it
   * @param {string} o.tabId
   * @param {object} o.env WebSocket, BroadcastChannel, locks, setTimeout, clearTimeout, navigator
   * @param {boolean} o.share false: never share (one socket for this tab)
   * @param {(failures: number) => string} o.urlFor
   * @param {number} o.userId the user_id the server gives this connection's messages when authorized
   * @param {(frame: object) => void} o.onFrame
   * @param {(connected: boolean) => void} o.onStatus
   * @param {(leader: boolean) => void} o.onRole
   * @param {(level: number, ...args: any[]) => void} o.log
   * @param {(url: string) => Promise<string|null>} [o.checkRefused] see Connection
   * @param {object} [o.backoff] Backoff instance (tests)
   * @param {boolean} [o.recovery] false: never use `subscription2` (positions and recovery)
   * @param {() => object} [o.positions] this tab's known positions, {pipe: {epoch, offset}}: a new leader
   *   starts from them, a follower sends them to the leader with its pipes
   */
  constructor(o) {
    this.o = o;
    this.tabId = o.tabId;
    this.pipes = [];
    this.leader = undefined;
    this.connection = null;
    this.router = null;
    this.tabPipes = new Map();
    this.lastServerInfo = null;
    this.authorized = false;
    this.left = false;
    this.connected = false;
    this.early = [];
    // The leader's view of every pipe's position, updated as frames come off the socket: what a resubscribe
    // asks for. Each tab's Client keeps its own for dedupe and getPosition().
    this.wire = new Positions();
    this.halley = false; // the current server greeted as Halley: subscription2 may be used
    this.v2Sent = false; // subscription2 went out on the current socket
    this.v2Confirmed = false; // a `subscribed` frame ever arrived: the server knows subscription2
    this.v2Refused = false; // a socket closed 1008 after subscription2 and before any `subscribed`
    const canShare = o.share !== false && typeof o.env.BroadcastChannel === "function" && hasLocks(o.env.locks);
    this.channel = canShare ? new o.env.BroadcastChannel(GROUP_PROTOCOL + o.key) : null;
    if (this.channel) this.channel.onmessage = (ev) => this.onChannel(ev.data);
    this.election = new Election({
      locks: canShare ? o.env.locks : undefined,
      name: GROUP_PROTOCOL + o.key,
      onRole: (leader) => this.setRole(leader),
      log: o.log,
    });
  }

  join() {
    this.election.start();
  }

  leave() {
    if (this.left) return;
    this.left = true;
    this.post({ t: "bye", from: this.tabId });
    if (this.connection) this.connection.stop();
    this.connection = null;
    this.election.stop();
    if (this.channel) this.channel.close();
    this.channel = null;
  }

  /** The page is going away or into the back-forward cache: the leader should stop counting our pipes. */
  hide() {
    if (this.leader === false) this.post({ t: "bye", from: this.tabId });
  }

  /** Back from the back-forward cache: announce ourselves again. */
  show() {
    if (this.leader === false) this.announce();
  }

  setPipes(pipes) {
    this.pipes = [...pipes];
    if (this.leader) {
      this.tabPipes.set(this.tabId, this.pipes);
      this.pushUnion();
    } else if (this.leader === false) {
      this.post({ t: "pipes", from: this.tabId, pipes: this.pipes });
    }
  }

  /**
   * @param {string} text the command frame
   * @param {object} [route] how to route its answer (see router.js)
   */
  send(text, route) {
    if (this.leader) {
      this.router.noteSend(this.tabId, route);
      this.connection.send(text);
    } else if (this.leader === false) {
      this.post({ t: "send", from: this.tabId, text, route });
    } else {
      // The election has not answered yet: keep the command until we know who writes to the socket.
      this.early.push({ text, route });
    }
  }

  isConnected() {
    return this.connected === true;
  }

  setRole(leader) {
    if (this.left) return;
    const wasLeader = this.leader;
    this.leader = leader;
    if (leader && !wasLeader) this.becomeLeader();
    if (!leader) this.announce();
    this.o.onRole(leader);
    const early = this.early;
    this.early = [];
    for (const { text, route } of early) this.send(text, route);
  }

  becomeLeader() {
    this.router = new Router({ now: this.o.env.now });
    this.tabPipes = new Map([[this.tabId, this.pipes]]);
    this.setConnected(false);
    this.wire = new Positions();
    this.wire.merge(this.o.positions ? this.o.positions() : null);
    this.connection = new Connection({
      waitGreeting: true,
      subscriptionText: (pipes) => this.subscriptionText(pipes),
      onClose: (ev) => this.onSocketClose(ev),
      urlFor: this.o.urlFor,
      checkRefused: this.o.checkRefused,
      env: this.o.env,
      backoff: this.o.backoff,
      log: this.o.log,
      onText: (text) => this.onText(text),
      onStatus: (open) => {
        this.setConnected(open);
        this.post({ t: "status", connected: open });
      },
    });
    this.connection.setPipes(this.union());
    this.connection.start();
    this.post({ t: "leader", from: this.tabId });
  }

  /** `subscription2` with the last positions to a server that knows it, else the original's `subscription`. */
  subscriptionText(pipes) {
    const positioned =
      this.o.recovery !== false && this.halley && !this.v2Refused && pipes.every((p) => POSITIONED_PIPE.test(p));
    if (!positioned) return subscriptionCommand(pipes);
    this.v2Sent = true;
    return subscription2Command(pipes.map((p) => this.wire.line(p)));
  }

  onSocketClose(ev) {
    // A server that does not know the command closes with 1008 "invalid command" (comet-server does): go on
    // without positions rather than reconnect into the same refusal.
    if (this.v2Sent && !this.v2Confirmed && ev && ev.code === 1008) {
      this.v2Refused = true;
      this.o.log(1, "the server refused subscription2; subscribing without positions (no recovery)");
    }
    this.v2Sent = false;
    this.halley = false;
  }

  announce() {
    const positions = this.o.positions ? this.o.positions() : undefined;
    this.post({ t: "pipes", from: this.tabId, pipes: this.pipes, positions });
    this.post({ t: "hello", from: this.tabId });
  }

  onText(text) {
    const { frames, bad } = parseFrames(text);
    if (bad.length) this.o.log(1, "dropped a frame that is not JSON:", bad[0].slice(0, 200));
    for (const frame of frames) {
      if (isServerInfo(frame)) {
        this.lastServerInfo = frame;
        this.authorized = authorizedOf(frame);
        this.halley = knowsSubscription2(frame);
      }
      if (isGapFrame(frame)) {
        // Frames of the pipe were dropped: ask again from the last position (the server replays or says false),
        // and drop the pipe's frames until that answer (they are of a numbering the position cannot place).
        this.wire.gap(frame.pipe);
        if (this.connection) this.connection.resubscribe();
        continue;
      }
      if (isSubscribedFrame(frame)) {
        this.v2Confirmed = true;
        this.wire.subscribed(frame.pipe, frame.data);
      } else {
        if (this.wire.held(frame)) continue;
        this.wire.accept(frame);
      }
      const code = errorCode(frame);
      if (code !== null && FATAL_CONNECT_CODES.includes(code) && this.connection) this.connection.markFatal();
      const senderId = this.authorized ? Number(this.o.userId) || 0 : 0;
      for (const d of this.router.route(frame, senderId)) this.deliver(d);
      if (isServerInfo(frame) && this.connection) this.connection.greet();
    }
  }

  deliver({ to, except, frame }) {
    const mine = to === undefined ? except !== this.tabId : to === this.tabId;
    if (mine) this.o.onFrame(frame);
    if (to !== this.tabId) this.post({ t: "frame", to, except, frame });
  }

  onChannel(m) {
    if (!m || typeof m !== "object" || this.left) return;
    if (this.leader) this.onFollowerMessage(m);
    else this.onLeaderMessage(m);
  }

  onFollowerMessage(m) {
    switch (m.t) {
      case "hello":
        this.post({ t: "status", connected: this.isConnected() });
        if (this.lastServerInfo) this.post({ t: "frame", to: m.from, frame: this.lastServerInfo });
        break;
      case "pipes":
        this.tabPipes.set(m.from, Array.isArray(m.pipes) ? m.pipes : []);
        this.wire.merge(m.positions);
        this.pushUnion();
        break;
      case "send":
        this.router.noteSend(m.from, m.route);
        this.connection.send(String(m.text));
        break;
      case "bye":
        this.tabPipes.delete(m.from);
        this.router.forget(m.from);
        this.pushUnion();
        break;
      case "leader":
        // Two leaders cannot both hold the lock; this is a stale message from before a hand-over.
        break;
      default:
        break;
    }
  }

  onLeaderMessage(m) {
    switch (m.t) {
      case "frame":
        if (m.to !== undefined && m.to !== this.tabId) return;
        if (m.except === this.tabId) return;
        this.o.onFrame(m.frame);
        break;
      case "status":
        this.setConnected(Boolean(m.connected));
        break;
      case "leader":
        this.setConnected(false);
        if (this.leader === false) this.announce();
        break;
      default:
        break;
    }
  }

  union() {
    const all = new Set();
    for (const pipes of this.tabPipes.values()) for (const p of pipes) all.add(p);
    return [...all];
  }

  pushUnion() {
    if (!this.connection) return;
    const union = this.union();
    if (union.length > 32) {
      this.o.log(0, `${union.length} pipes requested on one connection; the server keeps the first 32.`);
    }
    this.connection.setPipes(union);
  }

  setConnected(connected) {
    if (this.connected === connected) return;
    this.connected = connected;
    this.o.onStatus(connected);
  }

  post(message) {
    if (!this.channel) return;
    try {
      this.channel.postMessage(message);
    } catch (err) {
      this.o.log(1, "cannot post to the other tabs:", err);
    }
  }
}

function hasLocks(locks) {
  return Boolean(locks && typeof locks.request === "function");
}
