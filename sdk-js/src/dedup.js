// Ids of messages already handed to callbacks: the frame's `uuid` and the `_cometApi_uuid` that
// multi_web_pipe_send adds so that its repeated sends are delivered once. Entries live `ttlMs` (the
// original kept them 3 minutes) and the set is bounded, so a long-lived page does not grow without end.

export class RecentIds {
  constructor({ ttlMs = 180000, max = 5000, now = () => Date.now() } = {}) {
    this.ttlMs = ttlMs;
    this.max = max;
    this.now = now;
    this.seen = new Map();
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
    // Insertion order is time order: stop at the first entry still alive.
    for (const [id, at] of this.seen) {
      if (now - at < this.ttlMs) break;
      this.seen.delete(id);
    }
  }
}
