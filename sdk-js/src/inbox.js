// Private messages (`msg` frames) as this tab processed them, for connections that ask the server for their
// ids (`msg_after` in the URL, docs/websocket.md "Private messages: ids and recovery"). The id of the last one
// processed goes into the next connect URL, so that the server replays what was missed from its window; the
// ids recently seen drop a message that arrives twice (a replay overlapping live frames, a queue drained again
// after a broken write): at least once on the wire, exactly once to callbacks.

/** sessionStorage key of this tab's last private-message id and recent ids, so that a reload resumes there. */
export const INBOX_KEY = "halley_msg";

/** Ids as the server makes them (uuid v7, 36 characters). */
const ID = /^[0-9a-f-]{1,36}$/;

/** `{"data":{"recovered":false},"event":"msg_recovery","pipe":"msg"}`: messages may have been missed. */
export function isMsgRecoveryFrame(frame) {
  const d = frame.data;
  return (
    frame.pipe === "msg" &&
    frame.event === "msg_recovery" &&
    frame.id === undefined &&
    d !== null &&
    typeof d === "object" &&
    d.recovered === false
  );
}

/** The URL parameter that asks for ids: always sent (comet-server ignores it), empty before any message. */
export function msgAfterParam(last) {
  return "&msg_after=" + (ID.test(last) ? last : "");
}

export class Inbox {
  /** @param {{max?: number}} [o] how many recent ids are remembered for the dedupe */
  constructor({ max = 1000 } = {}) {
    this.max = max;
    this.last = "";
    /** @type {Set<string>} insertion order is arrival order: the oldest goes first */
    this.ids = new Set();
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
}
