// Server -> browser frames. Each WebSocket text frame is one JSON object; it is parsed as it is (the
// original first replaced every `\'` by `'`, which broke the JSON of any frame whose text held an escaped
// apostrophe and silently dropped it). Servers before 4.0 could put several objects in one frame, one per
// line, and named the event `event_name`; both are still read.

import { decodeData } from "./data.js";

/**
 * @param {string} text one WebSocket message
 * @returns {{frames: object[], bad: string[]}} the JSON objects, and the lines that were not JSON
 */
export function parseFrames(text) {
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

/** The event of a frame: `event`, or `event_name` in pre-4.0 frames. */
export function frameEvent(frame) {
  return frame.event !== undefined ? frame.event : frame.event_name;
}

export function isServerInfo(frame) {
  return frame.pipe === "sys" && frameEvent(frame) === "serverInfo" && frame.authorized !== undefined;
}

export function isErrorFrame(frame) {
  return frame.pipe === "sys" && frameEvent(frame) === "error";
}

/** The authorization result of a serverInfo frame (pre-4.0 servers sent it as the string "true"). */
export function authorizedOf(frame) {
  return frame.authorized === true || frame.authorized === "true";
}

/** Connect errors after which retrying cannot help: bad URL (401, 406: unknown dev_id, 418: no version). */
export const FATAL_CONNECT_CODES = [401, 406, 418];

/** The error code of a sys/error frame (its data may arrive as JSON text: pre-4.0 encoding), or null. */
export function errorCode(frame) {
  if (!isErrorFrame(frame)) return null;
  const data = decodeData(frame.data);
  if (data && typeof data === "object" && data.error_code !== undefined) return Number(data.error_code);
  if (frame.error !== undefined) return Number(frame.error);
  return null;
}

/** The error text of a sys/error frame. */
export function errorText(frame) {
  const data = decodeData(frame.data);
  if (data && typeof data === "object" && data.error !== undefined) return String(data.error);
  return typeof data === "string" ? data : JSON.stringify(data);
}

/**
 * The payload a callback receives: `{data, server_info: {user_id, pipe, event, history, marker, uuid}}`, as in
 * the original. `history` is true for messages replayed from a pipe's history (get_pipe_log), as the
 * original documentation promised (its server never said so). Sender ids from very old servers came as an
 * `A::<id>;` prefix of data.
 */
export function toPayload(frame) {
  let data = frame.data;
  let userId = 0;
  if (typeof data === "string" && data.startsWith("A::")) {
    const cut = data.indexOf(";");
    userId = Number(data.slice(3, cut < 0 ? undefined : cut)) || 0;
    data = cut < 0 ? "" : data.slice(cut + 1);
  }
  if (frame.user_id) userId = frame.user_id;
  return {
    data: decodeData(data),
    server_info: {
      user_id: userId,
      pipe: frame.pipe,
      event: frameEvent(frame),
      history: frame.history === true || (frame.fromQueue === true && frame.pipe !== "msg"),
      marker: frame.marker,
      uuid: frame.uuid,
    },
  };
}
