// The page's callbacks, by signal name ("chat", "chat.msg", "msg", "_answer_to_web_x", a marker...).
// Subscription ids keep the original's `<signal>&&<slot>` form: pages store them and hand them back to
// unsubscription().

export class SignalBus {
  /** @param {(msg: string, err: unknown) => void} onError where a throwing callback is reported */
  constructor(onError) {
    this.slots = new Map();
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
    if (!this.slots.has(signal)) this.slots.set(signal, new Map());
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
}

/** `<signal>&&<slot>`; the signal may itself contain `&&`, the slot never does. */
export function parseId(id) {
  if (typeof id !== "string") return null;
  const cut = id.lastIndexOf("&&");
  if (cut < 0) return null;
  return { signal: id.slice(0, cut), slot: id.slice(cut + 2) };
}
