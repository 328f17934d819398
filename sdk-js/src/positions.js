// Where this page stands in each pipe's stream: the (epoch, offset) of the last message processed, as the
// server numbers them for connections that used `subscription2` (docs/websocket.md). It says what to send on a
// resubscribe (`<pipe>\t<epoch>\t<offset>`, so the server replays what was missed or says it cannot), and drops
// a frame whose offset is not above the last one: a resubscribe may repeat a frame already on its way.

/** `{"event":"subscribed"}` as the server sends it (a user message of that event always carries an offset). */
export function isSubscribedFrame(frame) {
  const d = frame.data;
  return (
    frame.event === "subscribed" &&
    typeof frame.pipe === "string" &&
    frame.offset === undefined &&
    d !== null &&
    typeof d === "object" &&
    typeof d.epoch === "string" &&
    typeof d.recovered === "boolean" &&
    Number.isSafeInteger(d.offset)
  );
}

/** `{"data":{"pipe":"P"},"event":"gap","pipe":"P"}`: the server dropped frames of P for this connection. */
export function isGapFrame(frame) {
  const d = frame.data;
  return (
    frame.event === "gap" &&
    typeof frame.pipe === "string" &&
    frame.offset === undefined &&
    d !== null &&
    typeof d === "object" &&
    d.pipe === frame.pipe
  );
}

/** Epochs as the server makes them (docs/websocket.md): up to 64 characters of A-Za-z0-9_-. */
const EPOCH = /^[A-Za-z0-9_-]{1,64}$/;

export class Positions {
  constructor() {
    /** @type {Map<string, {epoch: string|null, offset: number}>} */
    this.byPipe = new Map();
    /** Pipes told `gap` and not yet answered by their `subscribed`: their frames are of a numbering this page
     * cannot place (a new epoch, or after a hole), so they are dropped until the resubscribe answers. */
    this.gapped = new Set();
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
    return (
      typeof frame.pipe === "string" &&
      this.gapped.has(frame.pipe) &&
      Number.isSafeInteger(frame.offset) &&
      frame.fromQueue !== true
    );
  }

  /**
   * A frame of a positioned pipe: true the first time its offset is seen (and it becomes the position),
   * false for a repeat. Frames without an offset (legacy connection, other pipes) always pass.
   */
  accept(frame) {
    if (typeof frame.pipe !== "string" || !Number.isSafeInteger(frame.offset)) return true;
    // A pipe_log entry carries its stored offset: history asked for, not the live stream's position.
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
      if (!mine || mine.epoch === null || (mine.epoch === pos.epoch && mine.offset < pos.offset)) {
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
    // A malformed line makes the server refuse the whole command and close: send such a pipe bare instead.
    if (!p || !EPOCH.test(p.epoch) || !(p.offset >= 0)) return pipe;
    return pipe + "\t" + p.epoch + "\t" + p.offset;
  }
}
