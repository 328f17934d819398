/*! Halley browser SDK 1.0.0 (comet-server JS API 4.08 compatible). Generated from sdk-js/src by `npm run build`: do not edit. */
(() => {
  // src/random.js
  var UUID_ALPHABET = "qwertyuiopasdfghjklzxcvbnm1234567890QWERTYUIOPASDFGHJKLZXCVBNM_-";
  var TOKEN_ALPHABET = "qwertyuiopasdfghjklzxcvbnm1234567890QWERTYUIOPASDFGHJKLZXCVBNM";
  function randomString(length, alphabet = TOKEN_ALPHABET, random = defaultRandom) {
    let out = "";
    for (let i = 0; i < length; i++) {
      out += alphabet[Math.floor(random() * alphabet.length) % alphabet.length];
    }
    return out;
  }
  function defaultRandom() {
    const c = globalThis.crypto;
    if (c && typeof c.getRandomValues === "function") {
      const buf = new Uint32Array(1);
      c.getRandomValues(buf);
      return buf[0] / 4294967296;
    }
    return Math.random();
  }

  // src/env.js
  function browserEnv() {
    const g2 = globalThis;
    const nav = g2.navigator;
    return {
      WebSocket: g2.WebSocket,
      BroadcastChannel: g2.BroadcastChannel,
      locks: nav && nav.locks ? nav.locks : void 0,
      navigator: nav,
      location: g2.location,
      storage: safeStorage(g2),
      session: safeSession(g2),
      setTimeout: (fn, ms) => g2.setTimeout(fn, ms),
      clearTimeout: (id) => g2.clearTimeout(id),
      now: () => Date.now(),
      random: defaultRandom,
      console: g2.console,
      fetch: typeof g2.fetch === "function" ? (url) => g2.fetch(url) : null,
      addEventListener: typeof g2.addEventListener === "function" ? (type, fn) => g2.addEventListener(type, fn) : null
    };
  }
  function safeStorage(g2) {
    try {
      const s = g2.localStorage;
      if (s) {
        const probe = "__halley_probe__";
        s.setItem(probe, "1");
        s.removeItem(probe);
        return s;
      }
    } catch {
    }
    return memoryStorage();
  }
  function safeSession(g2) {
    try {
      const s = g2.sessionStorage;
      if (s) {
        s.getItem("halley_positions");
        return s;
      }
    } catch {
    }
    return null;
  }
  function memoryStorage() {
    const m = /* @__PURE__ */ new Map();
    return {
      getItem: (k) => m.has(k) ? m.get(k) : null,
      setItem: (k, v) => void m.set(k, String(v)),
      removeItem: (k) => void m.delete(k)
    };
  }

  // src/backoff.js
  var DEFAULT_BACKOFF = Object.freeze({ baseMs: 500, maxMs: 3e4, factor: 2 });
  var Backoff = class {
    /**
     * @param {{baseMs?: number, maxMs?: number, factor?: number}} [options]
     * @param {() => number} [random] float in [0, 1)
     */
    constructor(options = {}, random = Math.random) {
      this.baseMs = options.baseMs ?? DEFAULT_BACKOFF.baseMs;
      this.maxMs = options.maxMs ?? DEFAULT_BACKOFF.maxMs;
      this.factor = options.factor ?? DEFAULT_BACKOFF.factor;
      this.random = random;
      this.attempt = 0;
    }
    /** The ceiling of the next delay, before jitter. */
    ceiling() {
      return Math.min(this.maxMs, this.baseMs * Math.pow(this.factor, this.attempt));
    }
    /**
     * The delay before the next attempt: uniform in [ceiling/2, ceiling] ("equal jitter"), so that it is never
     * near zero (no tight loop against a server that accepts and drops) and never above maxMs.
     */
    next() {
      const ceiling = this.ceiling();
      this.attempt++;
      return Math.round(ceiling / 2 + this.random() * (ceiling / 2));
    }
    /** After a connection that worked: the next failure starts again from the base delay. */
    reset() {
      this.attempt = 0;
    }
  };

  // src/commands.js
  function subscriptionCommand(pipes) {
    return "subscription\n" + pipes.join("\n");
  }
  function webPipeCommand(pipe, event, text) {
    return "web_pipe2\n" + pipe + "\n" + event + "\n*\n" + text;
  }
  function pipeLogCommand(pipe, marker) {
    return "pipe_log\n" + pipe + "\n" + marker + "\n";
  }
  function pipeCountCommand(pipe, marker) {
    return "pipe_count\n" + pipe + "\n" + marker + "\n";
  }
  function trackPipeUsersCommand(pipe, marker) {
    return "track_pipe_users\n" + pipe + "\n" + marker;
  }
  function userDataCommand(userId, marker) {
    return "user_data\n" + marker + "\n" + userId;
  }
  function statisticsCommand(payload) {
    return "statistics\n" + JSON.stringify(payload);
  }
  function subscription2Command(lines) {
    return "subscription2\n" + lines.join("\n");
  }

  // src/socket.js
  var SUBSCRIBE_BATCH_MS = 50;
  var STABLE_AFTER_MS = 5e3;
  var OFFLINE_POLL_MS = 1e3;
  var CHECK_AFTER_FAILURES = 3;
  var QUEUE_LIMIT = 500;
  var GREETING_WAIT_MS = 2e3;
  var Connection = class {
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
          ws.close(1e3, "stop");
        } catch {
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
        }
      );
    }
    flushSubscription() {
      if (!this.open || !this.greeted || !this.ws) return;
      const key = this.pipes.join("\n");
      if (this.sentPipes === key) return;
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
  };
  function detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
  }

  // src/election.js
  var Election = class {
    /**
     * @param {object} o
     * @param {any} o.locks navigator.locks, or undefined
     * @param {string} o.name lock name, the same for every tab that may share a socket
     * @param {(leader: boolean) => void} o.onRole called with false at most once, then true when leading
     * @param {(level: number, ...args: any[]) => void} o.log
     */
    constructor(o) {
      this.locks = o.locks;
      this.name = o.name;
      this.onRole = o.onRole;
      this.log = o.log;
      this.stopped = false;
      this.release = null;
      this.abort = null;
    }
    start() {
      if (!this.locks || typeof this.locks.request !== "function") {
        this.onRole(true);
        return;
      }
      this.locks.request(this.name, { ifAvailable: true }, (lock) => {
        if (lock) return this.lead();
        if (!this.stopped) {
          this.onRole(false);
          this.wait();
        }
        return void 0;
      }).catch((err) => this.failed(err));
    }
    /** Leaves the election; a held lock is released, which hands leadership to a waiting tab. */
    stop() {
      this.stopped = true;
      if (this.abort) this.abort.abort();
      if (this.release) this.release();
      this.release = null;
    }
    wait() {
      const options = {};
      if (typeof AbortController === "function") {
        this.abort = new AbortController();
        options.signal = this.abort.signal;
      }
      this.locks.request(this.name, options, () => this.lead()).catch((err) => {
        if (!this.stopped) this.failed(err);
      });
    }
    /** Holds the lock until stop() (or until the tab goes away, when the browser releases it). */
    lead() {
      if (this.stopped) return void 0;
      this.onRole(true);
      return new Promise((resolve) => {
        this.release = resolve;
      });
    }
    failed(err) {
      if (this.stopped) return;
      this.log(1, "tab election unavailable, this tab connects on its own:", err);
      this.onRole(true);
    }
  };

  // src/names.js
  var PIPE_RE = /^[A-Za-z0-9_-]{2,63}$/;
  var EVENT_RE = /^[A-Za-z0-9_-]{1,64}$/;
  var SENDABLE_RE = /^(@?web_|webauth_)[A-Za-z0-9_-]*$/;
  var ALL_SIGNAL = "comet_server_msg";
  var ANSWER_PREFIX = "_answer_to_";
  var RULES = 'a pipe name is 2 to 63 characters of A-Z a-z 0-9 _ -, optionally followed by ".event" (event: 1 to 64 of the same characters)';
  function parseSubscriptionName(name) {
    if (name === "" || name === ALL_SIGNAL) return { kind: "all", signal: ALL_SIGNAL };
    if (typeof name !== "string") return invalid(name, "a pipe name must be a string or a function");
    if (name === "msg" || name.startsWith("msg.")) {
      const checked2 = splitChecked(name);
      if (checked2.error) return invalid(name, checked2.error);
      return { kind: "msg", signal: name };
    }
    if (name.startsWith("#") || name.startsWith("answer_to_")) {
      const rest = name.startsWith("#") ? name.slice(1) : name.slice("answer_to_".length);
      const checked2 = splitChecked(rest);
      if (checked2.error) return invalid(name, checked2.error);
      return { kind: "answer", signal: ANSWER_PREFIX + rest };
    }
    const checked = splitChecked(name);
    if (checked.error) return invalid(name, checked.error);
    if (checked.pipe === "sys" || checked.pipe.startsWith("_answer")) {
      return { kind: "local", signal: name };
    }
    return { kind: "pipe", signal: name, pipe: checked.pipe, event: checked.event };
  }
  function splitChecked(name) {
    const dot = name.indexOf(".");
    const pipe = dot < 0 ? name : name.slice(0, dot);
    const event = dot < 0 ? void 0 : name.slice(dot + 1);
    if (!PIPE_RE.test(pipe)) return { error: RULES };
    if (event !== void 0 && !EVENT_RE.test(event)) return { error: RULES };
    return { pipe, event };
  }
  function invalid(name, why) {
    return { kind: "invalid", error: `Invalid pipe name ${JSON.stringify(String(name))}: ${why}.` };
  }
  function splitSendTarget(pipeOrTarget, eventOrMsg, msg, argCount) {
    if (argCount >= 3) return { pipe: String(pipeOrTarget), event: String(eventOrMsg), msg };
    const target = String(pipeOrTarget);
    const dot = target.indexOf(".");
    if (dot < 0) return { pipe: target, event: "undefined", msg: eventOrMsg };
    return { pipe: target.slice(0, dot), event: target.slice(dot + 1), msg: eventOrMsg };
  }
  function sendTargetError(pipe, event) {
    const bare = pipe.startsWith("@") ? pipe.slice(1) : pipe;
    if (!SENDABLE_RE.test(pipe) || !PIPE_RE.test(bare)) {
      return `Invalid channel name ${JSON.stringify(pipe)}: web_pipe_send needs a pipe that begins with web_, @web_ or webauth_ (2 to 63 characters of A-Z a-z 0-9 _ -).`;
    }
    if (event !== "" && !EVENT_RE.test(event)) {
      return `Invalid event name ${JSON.stringify(event)}: 1 to 64 characters of A-Z a-z 0-9 _ -.`;
    }
    return null;
  }
  function answeredPipe(pipe) {
    return typeof pipe === "string" && pipe.startsWith(ANSWER_PREFIX) ? pipe.slice(ANSWER_PREFIX.length) : null;
  }

  // src/router.js
  var PENDING_TTL_MS = 3e4;
  var HISTORY_WINDOW_MS = 1e4;
  var Router = class {
    constructor({ now = () => Date.now() } = {}) {
      this.now = now;
      this.markers = /* @__PURE__ */ new Map();
      this.sends = [];
      this.logs = /* @__PURE__ */ new Map();
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
        const entry = this.logs.get(route.log) || { tabs: /* @__PURE__ */ new Set(), until: 0 };
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
      if (frame.marker !== void 0 && this.markers.has(frame.marker)) {
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
      const message = frame.data && typeof frame.data === "object" ? frame.data.message : void 0;
      let i = this.sends.findIndex((s) => s.pipe === pipe && s.text === message);
      if (i < 0) i = this.sends.findIndex((s) => s.pipe === pipe);
      if (i < 0) return [{ frame }];
      const [sent] = this.sends.splice(i, 1);
      const echo = {
        data: sent.text,
        event: sent.event,
        message_send_time: frame.message_send_time,
        pipe: sent.pipe,
        user_id: sent.anonymous ? 0 : senderId
      };
      return [{ to: sent.tab, frame }, { except: sent.tab, frame: echo }];
    }
    prune(now) {
      for (const [marker, entry] of this.markers) if (now - entry.at > PENDING_TTL_MS) this.markers.delete(marker);
      while (this.sends.length && now - this.sends[0].at > PENDING_TTL_MS) this.sends.shift();
      for (const [pipe, entry] of this.logs) if (entry.until <= now) this.logs.delete(pipe);
    }
  };

  // src/data.js
  function stripslashes(str) {
    return String(str).replace(/\\(.?)/g, (_, c) => {
      if (c === "\\") return "\\";
      if (c === "0") return "\0";
      return c;
    });
  }
  var unquote = (s) => s.replace(/\\'/g, "'");
  function readings(text) {
    const once = stripslashes(text);
    const twice = stripslashes(once);
    return [text, unquote(text), once, unquote(once), twice, unquote(twice)];
  }
  function decodeData(data) {
    if (typeof data !== "string") return data;
    let previous = null;
    for (const candidate of readings(data)) {
      if (candidate === previous) continue;
      previous = candidate;
      try {
        return JSON.parse(candidate);
      } catch {
      }
    }
    return data;
  }

  // src/frames.js
  function parseFrames(text) {
    const whole = tryParse(text);
    if (whole.ok) return isObject(whole.value) ? { frames: [whole.value], bad: [] } : { frames: [], bad: [text] };
    const frames = [];
    const bad = [];
    for (const line of String(text).split("\n")) {
      if (line.trim() === "") continue;
      const one = tryParse(line);
      if (one.ok && isObject(one.value)) frames.push(one.value);
      else bad.push(line);
    }
    return { frames, bad };
  }
  function tryParse(text) {
    try {
      return { ok: true, value: JSON.parse(text) };
    } catch {
      return { ok: false };
    }
  }
  function isObject(v) {
    return v !== null && typeof v === "object" && !Array.isArray(v);
  }
  function frameEvent(frame) {
    return frame.event !== void 0 ? frame.event : frame.event_name;
  }
  function isServerInfo(frame) {
    return frame.pipe === "sys" && frameEvent(frame) === "serverInfo" && frame.authorized !== void 0;
  }
  function isErrorFrame(frame) {
    return frame.pipe === "sys" && frameEvent(frame) === "error";
  }
  function authorizedOf(frame) {
    return frame.authorized === true || frame.authorized === "true";
  }
  var FATAL_CONNECT_CODES = [401, 406, 418];
  function errorCode(frame) {
    if (!isErrorFrame(frame)) return null;
    const data = decodeData(frame.data);
    if (data && typeof data === "object" && data.error_code !== void 0) return Number(data.error_code);
    if (frame.error !== void 0) return Number(frame.error);
    return null;
  }
  function errorText(frame) {
    const data = decodeData(frame.data);
    if (data && typeof data === "object" && data.error !== void 0) return String(data.error);
    return typeof data === "string" ? data : JSON.stringify(data);
  }
  function toPayload(frame) {
    let data = frame.data;
    let userId = 0;
    if (typeof data === "string" && data.startsWith("A::")) {
      const cut = data.indexOf(";");
      userId = Number(data.slice(3, cut < 0 ? void 0 : cut)) || 0;
      data = cut < 0 ? "" : data.slice(cut + 1);
    }
    if (frame.user_id) userId = frame.user_id;
    return {
      data: decodeData(data),
      server_info: {
        user_id: userId,
        pipe: frame.pipe,
        event: frameEvent(frame),
        history: frame.history === true || frame.fromQueue === true && frame.pipe !== "msg",
        marker: frame.marker,
        uuid: frame.uuid
      }
    };
  }

  // src/positions.js
  function isSubscribedFrame(frame) {
    const d = frame.data;
    return frame.event === "subscribed" && typeof frame.pipe === "string" && frame.offset === void 0 && d !== null && typeof d === "object" && typeof d.epoch === "string" && typeof d.recovered === "boolean" && Number.isSafeInteger(d.offset);
  }
  function isGapFrame(frame) {
    const d = frame.data;
    return frame.event === "gap" && typeof frame.pipe === "string" && frame.offset === void 0 && d !== null && typeof d === "object" && d.pipe === frame.pipe;
  }
  var EPOCH = /^[A-Za-z0-9_-]{1,64}$/;
  var Positions = class {
    constructor() {
      this.byPipe = /* @__PURE__ */ new Map();
      this.gapped = /* @__PURE__ */ new Set();
    }
    /** @returns {{epoch: string, offset: number}|null} a copy; null until the pipe's epoch is known */
    get(pipe) {
      const p = this.byPipe.get(pipe);
      return p && p.epoch !== null ? { epoch: p.epoch, offset: p.offset } : null;
    }
    /** The position a `subscribed` frame announces: everything up to it is processed or declared lost. */
    subscribed(pipe, data) {
      this.gapped.delete(pipe);
      this.byPipe.set(pipe, { epoch: data.epoch, offset: data.offset });
    }
    /** A `gap` frame for `pipe`: hold its frames back until its next `subscribed`. */
    gap(pipe) {
      this.gapped.add(pipe);
    }
    /** True for a live frame of a pipe waiting for its `subscribed` after a gap: drop it (the resubscribe
     * replays it, or says recovered:false). History (`pipe_log`) entries are never held. */
    held(frame) {
      return typeof frame.pipe === "string" && this.gapped.has(frame.pipe) && Number.isSafeInteger(frame.offset) && frame.fromQueue !== true;
    }
    /**
     * A frame of a positioned pipe: true the first time its offset is seen (and it becomes the position),
     * false for a repeat. Frames without an offset (legacy connection, other pipes) always pass.
     */
    accept(frame) {
      if (typeof frame.pipe !== "string" || !Number.isSafeInteger(frame.offset)) return true;
      if (frame.fromQueue === true) return true;
      if (this.gapped.has(frame.pipe)) return false;
      const p = this.byPipe.get(frame.pipe);
      if (!p) {
        this.byPipe.set(frame.pipe, { epoch: null, offset: frame.offset });
        return true;
      }
      if (frame.offset <= p.offset) return false;
      p.offset = frame.offset;
      return true;
    }
    /** Takes `other` positions this one lacks or is behind on (same epoch) — a leader hand-over. */
    merge(entries) {
      if (!entries || typeof entries !== "object") return;
      for (const [pipe, pos] of Object.entries(entries)) {
        if (!pos || typeof pos.epoch !== "string" || !Number.isSafeInteger(pos.offset)) continue;
        const mine = this.byPipe.get(pipe);
        if (!mine || mine.epoch === null || mine.epoch === pos.epoch && mine.offset < pos.offset) {
          this.byPipe.set(pipe, { epoch: pos.epoch, offset: pos.offset });
        }
      }
    }
    /** The known positions of `pipes` (or all), as a plain object (posted between tabs, kept in sessionStorage). */
    snapshot(pipes) {
      const out = {};
      for (const pipe of pipes || this.byPipe.keys()) {
        const p = this.get(pipe);
        if (p) out[pipe] = p;
      }
      return out;
    }
    /** The `subscription2` line of a pipe: with its position when one is known. */
    line(pipe) {
      const p = this.get(pipe);
      if (!p || !EPOCH.test(p.epoch) || !(p.offset >= 0)) return pipe;
      return pipe + "	" + p.epoch + "	" + p.offset;
    }
  };

  // src/group.js
  var POSITIONED_PIPE = /^[A-Za-z0-9_-]{2,63}$/;
  function knowsSubscription2(serverInfo) {
    return typeof serverInfo.server === "string" && serverInfo.server.includes("-Halley-");
  }
  var GROUP_PROTOCOL = "halley-tabs-1:";
  var TabGroup = class {
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
      this.leader = void 0;
      this.connection = null;
      this.router = null;
      this.tabPipes = /* @__PURE__ */ new Map();
      this.lastServerInfo = null;
      this.authorized = false;
      this.left = false;
      this.connected = false;
      this.early = [];
      this.wire = new Positions();
      this.halley = false;
      this.v2Sent = false;
      this.v2Confirmed = false;
      this.v2Refused = false;
      const canShare = o.share !== false && typeof o.env.BroadcastChannel === "function" && hasLocks(o.env.locks);
      this.channel = canShare ? new o.env.BroadcastChannel(GROUP_PROTOCOL + o.key) : null;
      if (this.channel) this.channel.onmessage = (ev) => this.onChannel(ev.data);
      this.election = new Election({
        locks: canShare ? o.env.locks : void 0,
        name: GROUP_PROTOCOL + o.key,
        onRole: (leader) => this.setRole(leader),
        log: o.log
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
      this.tabPipes = /* @__PURE__ */ new Map([[this.tabId, this.pipes]]);
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
        }
      });
      this.connection.setPipes(this.union());
      this.connection.start();
      this.post({ t: "leader", from: this.tabId });
    }
    /** `subscription2` with the last positions to a server that knows it, else the original's `subscription`. */
    subscriptionText(pipes) {
      const positioned = this.o.recovery !== false && this.halley && !this.v2Refused && pipes.every((p) => POSITIONED_PIPE.test(p));
      if (!positioned) return subscriptionCommand(pipes);
      this.v2Sent = true;
      return subscription2Command(pipes.map((p) => this.wire.line(p)));
    }
    onSocketClose(ev) {
      if (this.v2Sent && !this.v2Confirmed && ev && ev.code === 1008) {
        this.v2Refused = true;
        this.o.log(1, "the server refused subscription2; subscribing without positions (no recovery)");
      }
      this.v2Sent = false;
      this.halley = false;
    }
    announce() {
      const positions = this.o.positions ? this.o.positions() : void 0;
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
      const mine = to === void 0 ? except !== this.tabId : to === this.tabId;
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
          break;
        default:
          break;
      }
    }
    onLeaderMessage(m) {
      switch (m.t) {
        case "frame":
          if (m.to !== void 0 && m.to !== this.tabId) return;
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
      const all = /* @__PURE__ */ new Set();
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
  };
  function hasLocks(locks) {
    return Boolean(locks && typeof locks.request === "function");
  }

  // src/signals.js
  var SignalBus = class {
    /** @param {(msg: string, err: unknown) => void} onError where a throwing callback is reported */
    constructor(onError) {
      this.slots = /* @__PURE__ */ new Map();
      this.next = 0;
      this.onError = onError;
    }
    /**
     * @param {string} signal
     * @param {Function} fn
     * @param {{skipMarked?: boolean, once?: boolean}} [opts] skipMarked: not called for answers to a request
     *   (frames carrying a marker), as named subscriptions behave in the original; once: removed after a call.
     * @returns {string} the subscription id
     */
    connect(signal, fn, opts = {}) {
      const slot = "sig" + this.next++;
      if (!this.slots.has(signal)) this.slots.set(signal, /* @__PURE__ */ new Map());
      this.slots.get(signal).set(slot, { fn, skipMarked: Boolean(opts.skipMarked), once: Boolean(opts.once) });
      return signal + "&&" + slot;
    }
    /** @returns {boolean} whether the id named a connected callback */
    disconnectId(id) {
      const parsed = parseId(id);
      if (!parsed) return false;
      const slots = this.slots.get(parsed.signal);
      if (!slots || !slots.delete(parsed.slot)) return false;
      if (slots.size === 0) this.slots.delete(parsed.signal);
      return true;
    }
    has(id) {
      const parsed = parseId(id);
      return Boolean(parsed && this.slots.get(parsed.signal)?.has(parsed.slot));
    }
    clear() {
      this.slots.clear();
    }
    /** Calls every callback of `signal`; one that throws does not stop the others. */
    emit(signal, payload, marked = false) {
      const slots = this.slots.get(signal);
      if (!slots) return 0;
      let called = 0;
      for (const [slot, entry] of [...slots]) {
        if (marked && entry.skipMarked) continue;
        if (entry.once) slots.delete(slot);
        called++;
        try {
          entry.fn(payload);
        } catch (err) {
          this.onError(`a callback of "${signal}" threw`, err);
        }
      }
      if (slots.size === 0) this.slots.delete(signal);
      return called;
    }
  };
  function parseId(id) {
    if (typeof id !== "string") return null;
    const cut = id.lastIndexOf("&&");
    if (cut < 0) return null;
    return { signal: id.slice(0, cut), slot: id.slice(cut + 2) };
  }

  // src/dedup.js
  var RecentIds = class {
    constructor({ ttlMs = 18e4, max = 5e3, now = () => Date.now() } = {}) {
      this.ttlMs = ttlMs;
      this.max = max;
      this.now = now;
      this.seen = /* @__PURE__ */ new Map();
    }
    /** @returns {boolean} true the first time `id` is offered within the ttl, false for a repeat */
    firstTime(id) {
      const now = this.now();
      this.prune(now);
      if (this.seen.has(id)) return false;
      this.seen.set(id, now);
      if (this.seen.size > this.max) this.seen.delete(this.seen.keys().next().value);
      return true;
    }
    prune(now) {
      for (const [id, at] of this.seen) {
        if (now - at < this.ttlMs) break;
        this.seen.delete(id);
      }
    }
  };

  // src/version.js
  var API_VERSION = "4.08";
  var SDK_VERSION = "1.0.0";

  // src/url.js
  var KEY_SAFE = /[A-Za-z0-9\-._~=+/:]/;
  function encodeKey(key) {
    let out = "";
    for (const ch of String(key)) {
      out += KEY_SAFE.test(ch) ? ch : encodeURIComponent(ch);
    }
    return out;
  }
  function normalizeNode(node) {
    return String(node).trim().replace(/^[a-z][a-z0-9+.-]*:\/\//i, "").replace(/\/+$/, "");
  }
  function defaultNode(location) {
    return location && location.host ? location.host : "";
  }
  function useSecure(wssOption, location) {
    if (wssOption === true) return true;
    if (wssOption === false) return false;
    return Boolean(location && location.protocol === "https:");
  }
  function buildUrl(p) {
    const key = p.userKey === void 0 || p.userKey === null ? "" : encodeKey(p.userKey);
    const userId = p.userId === void 0 || p.userId === null || p.userId === "" ? 0 : p.userId;
    return (p.secure ? "wss" : "ws") + "://" + normalizeNode(p.node) + "/ws/sesion=" + key + "&myid=" + encodeURIComponent(String(userId)) + "&devid=" + encodeURIComponent(String(p.devId)) + "&v=" + API_VERSION + "&uuid=" + p.uuid + "&api=js";
  }
  function pickNode(nodes, userId, failures) {
    if (nodes.length === 0) return "";
    const id = Number(userId);
    const start = Number.isFinite(id) && id > 0 ? id % nodes.length : 0;
    return nodes[(start + failures) % nodes.length];
  }

  // src/options.js
  var ALIASES = { devId: "dev_id", userId: "user_id", userKey: "user_key" };
  function mergeOptions(current, given) {
    const out = { ...current };
    if (!given || typeof given !== "object") return out;
    for (const [k, v] of Object.entries(given)) out[ALIASES[k] || k] = v;
    return out;
  }
  function nodeList(options, location) {
    let nodes = options.nodes !== void 0 ? options.nodes : options.node;
    if (nodes === void 0 || nodes === null || nodes === "") nodes = options.nodeArray;
    if (nodes === void 0 || nodes === null || nodes === "") nodes = [defaultNode(location)];
    if (!Array.isArray(nodes)) nodes = [nodes];
    return nodes.map(normalizeNode).filter((n) => n !== "");
  }
  function optionsError(options, nodes) {
    const dev = Number(options.dev_id);
    if (!Number.isInteger(dev) || dev <= 0) {
      return `dev_id must be your tenant's number (got ${JSON.stringify(options.dev_id)}); see your Halley dashboard.`;
    }
    if (nodes.length === 0) return "no node to connect to: pass the `node` option (host:port of the Halley server).";
    return null;
  }
  function groupKey(options, nodes) {
    return [nodes.join(","), options.dev_id, options.user_id ?? "", hash(String(options.user_key ?? ""))].join("|");
  }
  function hash(text) {
    let h = 2166136261;
    for (let i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 16777619) >>> 0;
    }
    return h.toString(36);
  }

  // src/log.js
  var STORAGE_KEY = "comet_LogLevel";
  var Logger = class {
    constructor(env) {
      this.env = env;
      this.level = 0;
      const stored = Number(env.storage.getItem(STORAGE_KEY));
      if (Number.isFinite(stored) && stored > 0) this.level = stored;
    }
    setLevel(level) {
      const n = Number(level);
      this.level = Number.isFinite(n) && n > 0 ? n : 0;
      try {
        this.env.storage.setItem(STORAGE_KEY, String(this.level));
      } catch {
      }
    }
    getLevel() {
      return this.level;
    }
    /** level 0: error, always shown; 1: warning; 2 and up: information. */
    at(level, ...args) {
      if (level <= 0) return this.error(...args);
      if (level > this.level) return;
      const c = this.env.console;
      if (!c) return;
      if (level === 1) c.warn("[halley]", ...args);
      else c.log("[halley]", ...args);
    }
    error(...args) {
      const c = this.env.console;
      if (c) c.error("[halley]", ...args);
    }
    warn(...args) {
      const c = this.env.console;
      if (c) c.warn("[halley]", ...args);
    }
  };

  // src/inbox.js
  var INBOX_KEY = "halley_msg";
  var ID = /^[0-9a-f-]{1,36}$/;
  function isMsgRecoveryFrame(frame) {
    const d = frame.data;
    return frame.pipe === "msg" && frame.event === "msg_recovery" && frame.id === void 0 && d !== null && typeof d === "object" && d.recovered === false;
  }
  function msgAfterParam(last) {
    return "&msg_after=" + (ID.test(last) ? last : "");
  }
  var Inbox = class {
    /** @param {{max?: number}} [o] how many recent ids are remembered for the dedupe */
    constructor({ max = 1e3 } = {}) {
      this.max = max;
      this.last = "";
      this.ids = /* @__PURE__ */ new Set();
    }
    /** A `msg` frame: true the first time its id is seen (it becomes the last), false for a repeat. */
    accept(frame) {
      if (frame.pipe !== "msg" || typeof frame.id !== "string" || !ID.test(frame.id)) return true;
      if (this.ids.has(frame.id)) return false;
      this.ids.add(frame.id);
      if (this.ids.size > this.max) this.ids.delete(this.ids.values().next().value);
      this.last = frame.id;
      return true;
    }
    /** As a plain object (kept in sessionStorage). */
    snapshot() {
      return { last: this.last, ids: [...this.ids] };
    }
    /** Takes a snapshot back (a reload of the tab); ignored when malformed. */
    restore(s) {
      if (!s || typeof s !== "object" || typeof s.last !== "string" || !Array.isArray(s.ids)) return;
      for (const id of s.ids.slice(-this.max)) if (typeof id === "string" && ID.test(id)) this.ids.add(id);
      if (ID.test(s.last)) this.last = s.last;
    }
  };

  // src/client.js
  var POSITIONS_KEY = "halley_positions";
  var MSG_LAST_KEY = "halley_msg_last:";
  var Client = class {
    /** @param {object} [env] overrides of browserEnv() (tests) */
    constructor(env) {
      this.env = { ...browserEnv(), ...env || {} };
      this.log = new Logger(this.env);
      this.bus = new SignalBus((what, err) => this.log.error(what + ":", err));
      this.recent = new RecentIds({ now: this.env.now });
      this.options = {};
      this.tabId = randomString(16, void 0, this.env.random);
      this.pipeOf = /* @__PURE__ */ new Map();
      this.subscriptionIds = /* @__PURE__ */ new Set();
      this.beforeStart = [];
      this.group = null;
      this.started = false;
      this.authorized = void 0;
      this.realUserKey = void 0;
      this.connected = false;
      this.leader = void 0;
      this.authListeners = { success: new SignalBus(this.bus.onError), fail: new SignalBus(this.bus.onError) };
      this.statusListeners = new SignalBus(this.bus.onError);
      this.answerWaiters = [];
      this.pageHooked = false;
      this.signature = null;
      this.positions = new Positions();
      this.recoveryListeners = /* @__PURE__ */ new Map();
      this.loadPositions();
      this.inbox = new Inbox();
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
      if (this.options.logLevel !== void 0) this.log.setLevel(this.options.logLevel);
      const nodes = nodeList(this.options, this.env.location);
      const problem = optionsError(this.options, nodes);
      if (problem) {
        this.log.error(problem);
        return false;
      }
      const key = groupKey(this.options, nodes);
      this.getUUID();
      const signature = [key, this.options.share, this.options.wss, this.options.uuid].join("|");
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
        urlFor: (failures) => buildUrl({
          node: pickNode(nodes, this.options.user_id, failures),
          secure,
          userKey: this.options.user_key,
          userId: this.options.user_id,
          devId: this.options.dev_id,
          uuid: this.getUUID()
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
        log: (level, ...args) => this.log.at(level, ...args)
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
      this.leader = void 0;
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
        let last = false;
        for (const one of name.split("\n")) last = this.subscribe(one, callback);
        return last;
      }
      const parsed = parseSubscriptionName(name);
      if (parsed.kind === "invalid") {
        this.log.error(parsed.error);
        return false;
      }
      const fn = typeof callback === "function" ? callback : () => {
      };
      const id = this.track(this.bus.connect(parsed.signal, fn, { skipMarked: parsed.kind !== "all" }));
      if (parsed.kind === "pipe") {
        this.pipeOf.set(id, parsed.pipe);
        this.pipesChanged();
      }
      return id;
    }
    /** @returns {boolean} */
    unsubscribe(id) {
      if (id === void 0) {
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
      if (this.beforeStart.length >= 100) {
        this.log.warn("not started: dropped", text.split("\n")[0]);
        return false;
      }
      this.beforeStart.push({ text, route });
      return true;
    }
    newMarker() {
      return randomString(10, void 0, this.env.random);
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
      if (frame.data === void 0) return;
      if (isErrorFrame(frame)) this.log.error("server error: " + errorText(frame));
      if (frame.jscode !== void 0) {
        this.log.warn("ignored a frame carrying jscode");
        return;
      }
      if (isSubscribedFrame(frame)) {
        this.onSubscribed(frame.pipe, frame.data);
        return;
      }
      if (isGapFrame(frame)) return;
      if (isMsgRecoveryFrame(frame)) {
        this.onMsgRecoveryFailed();
        return;
      }
      if (!this.inbox.accept(frame)) return;
      if (frame.pipe === "msg" && frame.id === this.inbox.last) this.shareLastMsg();
      if (!this.positions.accept(frame)) return;
      const payload = toPayload(frame);
      if (frame.uuid !== void 0 && !this.recent.firstTime("f:" + frame.uuid)) return;
      const data = payload.data;
      if (data && typeof data === "object" && data._cometApi_uuid !== void 0) {
        if (!this.recent.firstTime("m:" + data._cometApi_uuid)) return;
        delete data._cometApi_uuid;
      }
      this.emit(frame, payload);
    }
    /** The original's signal order: pipe, pipe.event, the marker's one-shot callback, then catch-all. */
    emit(frame, payload) {
      const marked = frame.marker !== void 0;
      const event = frameEvent(frame);
      const hasEvent = typeof event === "string" || typeof event === "number";
      if (frame.pipe !== void 0) {
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
      const message = payload.data && typeof payload.data === "object" ? payload.data.message : void 0;
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
      if (!this.recoveryListeners.has(name)) this.recoveryListeners.set(name, /* @__PURE__ */ new Set());
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
      for (const fn of [...this.recoveryListeners.get("msg") || []]) {
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
      }
    }
    loadInbox() {
      const session = this.env.session;
      if (!session) return;
      try {
        this.inbox.restore(JSON.parse(session.getItem(INBOX_KEY) || "null"));
      } catch {
      }
    }
    saveInbox() {
      const session = this.env.session;
      if (!session) return;
      try {
        session.setItem(INBOX_KEY, JSON.stringify(this.inbox.snapshot()));
      } catch {
      }
    }
    loadPositions() {
      const session = this.env.session;
      if (!session) return;
      try {
        this.positions.merge(JSON.parse(session.getItem(POSITIONS_KEY) || "{}"));
      } catch {
      }
    }
    savePositions() {
      const session = this.env.session;
      if (!session) return;
      try {
        session.setItem(POSITIONS_KEY, JSON.stringify(this.positions.snapshot()));
      } catch {
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
  };
  async function originRefused(env, wsUrl, devId) {
    if (typeof env.fetch !== "function") return null;
    const at = wsUrl.indexOf("/ws/sesion=");
    if (at < 0) return null;
    const base = wsUrl.slice(0, at).replace(/^ws/, "http");
    const res = await env.fetch(base + "/info?dev_id=" + encodeURIComponent(String(devId)));
    if (!res || !res.ok) return null;
    const info = await res.json();
    if (!info || info.origin_allowed !== false) return null;
    const origin = env.location && env.location.origin ? env.location.origin : "this page's origin";
    return `${origin} is not in the "Allowed origins" of dev_id ${devId} (dashboard: Settings), so the server refuses its WebSocket connections (HTTP 403); not reconnecting. Add the origin there (or empty the list) and reload the page.`;
  }

  // src/compat.js
  var CometServerApi = class {
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
      if (name === void 0) return false;
      return this.client.subscribe(name, callback);
    }
    unsubscription(sigId) {
      if (sigId !== void 0 && !sigId) return false;
      return this.client.unsubscribe(sigId);
    }
    unsubscriptionAll() {
      return this.client.unsubscribeAll();
    }
    // ---- publishing ----
    /** web_pipe_send(pipe, event, msg) or web_pipe_send("pipe.event", msg); msg is sent as JSON. */
    web_pipe_send(pipe_name, event_name, msg) {
      const t = splitSendTarget(pipe_name, event_name, msg, arguments.length);
      if (t.msg === void 0) return false;
      const problem = sendTargetError(t.pipe, t.event);
      if (problem) {
        this.client.log.error(problem);
        return void 0;
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
      interval = interval || 1e3;
      if (msg === null || typeof msg !== "object") {
        this.client.log.warn("multi_web_pipe_send needs an object message to de-duplicate; sent once.");
        return this.web_pipe_send(pipe_name, event_name, msg);
      }
      msg._cometApi_uuid = "jsapi" + randomString(11, void 0, this.client.env.random);
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
      if (callBack !== void 0 && this.client.subscribe(pipe_name, callBack) === false) return false;
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
        return void 0;
      }
      const marker = this.client.newMarker();
      if (typeof callBack === "function") this.client.onceMarker(marker, callBack);
      return this.client.send(trackPipeUsersCommand(pipe_name, marker), { marker });
    }
    getUserData(user_id, callBack) {
      if (!user_id || /[^0-9]/.test(String(user_id))) {
        this.client.log.error(`Invalid user_id=\`${user_id}\`. The user_id should be an integer`);
        return void 0;
      }
      if (typeof callBack !== "function") return void 0;
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
          plugin: { name: plugin_name, version: plugin_version, data: plugin_data }
        })
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
      this.client.options.wss = use === void 0 ? void 0 : Boolean(use);
      return this.isUseWss();
    }
    isUseWss() {
      const o = this.client.options.wss;
      if (o !== void 0) return Boolean(o);
      const loc = this.client.env.location;
      return Boolean(loc && loc.protocol === "https:");
    }
    getLogLevel() {
      return this.client.log.getLevel();
    }
    setLogLevel(level) {
      this.client.log.setLevel(level);
    }
  };

  // src/modern.js
  var DEFAULT_TIMEOUT_MS = 1e4;
  var Halley = class {
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
      const t = splitSendTarget(pipe, event, data, data === void 0 ? 2 : 3);
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
        (data) => Array.isArray(data) ? Number(data[1]) : Number(data && data.user_in_pipe)
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
      return this.ask(`user data of ${userId}`, timeoutMs, (marker) => userDataCommand(userId, marker)).then(
        (d) => d && typeof d === "object" ? d.user_data : d
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
  };

  // src/index.js
  var cometApi = new CometServerApi();
  function CometServer() {
    return cometApi;
  }
  function cometServerApi(opt) {
    return new CometServerApi(opt);
  }
  var _cometServerApi = cometServerApi;

  // src/classic.js
  var g = globalThis;
  if (!(g.cometApi instanceof Object && g.cometApi.client && typeof g.CometServer === "function")) {
    g.cometApi = cometApi;
    g.CometServer = CometServer;
    g.cometServerApi = cometServerApi;
    g._cometServerApi = _cometServerApi;
    g.CometServerApi = CometServerApi;
    g.Halley = Halley;
  }
})();
