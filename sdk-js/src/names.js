// What a name given to `subscription()` means. The forms are the original API's:
//   "pipe"            messages of a pipe             (the pipe is sent to the server)
//   "pipe.event"      one event of a pipe            (the pipe is sent to the server)
//   "msg", "msg.ev"   private messages to this user  (local only: the server sends them unasked)
//   "#pipe"           delivery reports of web_pipe_send to that pipe (local only; = "_answer_to_pipe")
//   "answer_to_web_x" the same report under its old name
//   "" (or a function) every message this connection receives
// Names are checked here, before anything reaches the server: a pipe name of 64 characters or more makes
// the server close the connection, which would cut every tab sharing it.

/** Every pipe name the server accepts in a `subscription` frame. */
export const PIPE_RE = /^[A-Za-z0-9_-]{2,63}$/;
/** Event names: the server's character set, at most 64 characters. */
export const EVENT_RE = /^[A-Za-z0-9_-]{1,64}$/;
/** Pipes a browser may publish to with web_pipe_send (`@web_` hides the sender's user_id). */
export const SENDABLE_RE = /^(@?web_|webauth_)[A-Za-z0-9_-]*$/;

export const ALL_SIGNAL = "comet_server_msg";
const ANSWER_PREFIX = "_answer_to_";

const RULES =
  'a pipe name is 2 to 63 characters of A-Z a-z 0-9 _ -, optionally followed by ".event" ' +
  "(event: 1 to 64 of the same characters)";

/**
 * @returns {{kind: "all"|"msg"|"answer"|"local"|"pipe", signal: string, pipe?: string, event?: string}
 *          | {kind: "invalid", error: string}}
 */
export function parseSubscriptionName(name) {
  if (name === "" || name === ALL_SIGNAL) return { kind: "all", signal: ALL_SIGNAL };
  if (typeof name !== "string") return invalid(name, "a pipe name must be a string or a function");

  if (name === "msg" || name.startsWith("msg.")) {
    const checked = splitChecked(name);
    if (checked.error) return invalid(name, checked.error);
    return { kind: "msg", signal: name };
  }
  if (name.startsWith("#") || name.startsWith("answer_to_")) {
    const rest = name.startsWith("#") ? name.slice(1) : name.slice("answer_to_".length);
    const checked = splitChecked(rest);
    if (checked.error) return invalid(name, checked.error);
    return { kind: "answer", signal: ANSWER_PREFIX + rest };
  }
  const checked = splitChecked(name);
  if (checked.error) return invalid(name, checked.error);
  // Frames of these pipes reach every connection without a subscription: keep them off the server's list.
  if (checked.pipe === "sys" || checked.pipe.startsWith("_answer")) {
    return { kind: "local", signal: name };
  }
  return { kind: "pipe", signal: name, pipe: checked.pipe, event: checked.event };
}

function splitChecked(name) {
  const dot = name.indexOf(".");
  const pipe = dot < 0 ? name : name.slice(0, dot);
  const event = dot < 0 ? undefined : name.slice(dot + 1);
  if (!PIPE_RE.test(pipe)) return { error: RULES };
  if (event !== undefined && !EVENT_RE.test(event)) return { error: RULES };
  return { pipe, event };
}

function invalid(name, why) {
  return { kind: "invalid", error: `Invalid pipe name ${JSON.stringify(String(name))}: ${why}.` };
}

/**
 * web_pipe_send's two signatures: (pipe, event, msg) and ("pipe.event", msg). As in the original, the
 * two-argument form without a dot sends the event name "undefined".
 */
export function splitSendTarget(pipeOrTarget, eventOrMsg, msg, argCount) {
  if (argCount >= 3) return { pipe: String(pipeOrTarget), event: String(eventOrMsg), msg };
  const target = String(pipeOrTarget);
  const dot = target.indexOf(".");
  if (dot < 0) return { pipe: target, event: "undefined", msg: eventOrMsg };
  return { pipe: target.slice(0, dot), event: target.slice(dot + 1), msg: eventOrMsg };
}

/** Why a web_pipe_send target is refused, or null when it is fine. */
export function sendTargetError(pipe, event) {
  const bare = pipe.startsWith("@") ? pipe.slice(1) : pipe;
  if (!SENDABLE_RE.test(pipe) || !PIPE_RE.test(bare)) {
    return `Invalid channel name ${JSON.stringify(pipe)}: web_pipe_send needs a pipe that begins with web_, @web_ or webauth_ (2 to 63 characters of A-Z a-z 0-9 _ -).`;
  }
  if (event !== "" && !EVENT_RE.test(event)) {
    return `Invalid event name ${JSON.stringify(event)}: 1 to 64 characters of A-Z a-z 0-9 _ -.`;
  }
  return null;
}

/** The pipe a `_answer_to_<pipe>` delivery report is about, or null. */
export function answeredPipe(pipe) {
  return typeof pipe === "string" && pipe.startsWith(ANSWER_PREFIX) ? pipe.slice(ANSWER_PREFIX.length) : null;
}
