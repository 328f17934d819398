// Reconnect delays: exponential, capped, and jittered so that the tabs of thousands of browsers that lost the
// server at the same moment do not come back at the same moment (the original retried every 1 s after a
// received message, and a fixed schedule otherwise, so a restarted server met every client at once).

export const DEFAULT_BACKOFF = Object.freeze({ baseMs: 500, maxMs: 30000, factor: 2 });

export class Backoff {
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
}
