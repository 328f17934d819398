import { test } from "node:test";
import assert from "node:assert/strict";
import { Backoff } from "../../src/backoff.js";

test("delays double from the base up to the cap and never exceed it", () => {
  const b = new Backoff({ baseMs: 500, maxMs: 30000 }, () => 0.999999);
  const delays = Array.from({ length: 12 }, () => b.next());
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000, 30000, 30000]);
});

test("jitter: each delay is within [ceiling/2, ceiling], never near zero", () => {
  const low = new Backoff({ baseMs: 500, maxMs: 30000 }, () => 0);
  assert.deepEqual(Array.from({ length: 8 }, () => low.next()), [250, 500, 1000, 2000, 4000, 8000, 15000, 15000]);
  const b = new Backoff({}, Math.random);
  for (let i = 0; i < 200; i++) {
    const ceiling = b.ceiling();
    const d = b.next();
    assert.ok(d >= ceiling / 2 && d <= ceiling, `${d} within [${ceiling / 2}, ${ceiling}]`);
  }
});

test("jitter spreads clients: 1000 clients' first retries are not all the same", () => {
  const firsts = new Set(Array.from({ length: 1000 }, () => new Backoff().next()));
  assert.ok(firsts.size > 100, `${firsts.size} distinct delays`);
});

test("reset after a success starts again from the base", () => {
  const b = new Backoff({ baseMs: 100, maxMs: 1000 }, () => 0.999999);
  b.next();
  b.next();
  b.next();
  assert.equal(b.next(), 800);
  b.reset();
  assert.equal(b.next(), 100);
});
