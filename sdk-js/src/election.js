// Which tab holds the shared socket. The Web Locks API does the election: the tab holding the lock named
// after the connection is the leader; the others wait in the lock's queue, so when the leader tab closes
// (or calls stop()) the browser hands the lock, and the socket, to the next tab with no timers and no
// split-brain. Where navigator.locks is missing every tab leads itself (one socket per tab, as 4.x did).

export class Election {
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
    this.locks
      .request(this.name, { ifAvailable: true }, (lock) => {
        if (lock) return this.lead();
        if (!this.stopped) {
          this.onRole(false);
          this.wait();
        }
        return undefined;
      })
      .catch((err) => this.failed(err));
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
    this.locks
      .request(this.name, options, () => this.lead())
      .catch((err) => {
        if (!this.stopped) this.failed(err);
      });
  }

  /** Holds the lock until stop() (or until the tab goes away, when the browser releases it). */
  lead() {
    if (this.stopped) return undefined;
    this.onRole(true);
    return new Promise((resolve) => {
      this.release = resolve;
    });
  }

  failed(err) {
    if (this.stopped) return;
    // Locks refused (for example in an opaque-origin frame): fall back to a socket of our own.
    this.log(1, "tab election unavailable, this tab connects on its own:", err);
    this.onRole(true);
  }
}
