// Console output. Errors (a refused option, an invalid pipe name, an error frame from the server) are always
// shown, with the "[halley]" prefix; the rest only up to the log level, which is kept in localStorage
// `comet_LogLevel` as the original did, so `CometServer().setLogLevel(3)` survives a reload.

const STORAGE_KEY = "comet_LogLevel";

export class Logger {
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
      // Storage full or blocked: the level still applies to this page.
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
}
