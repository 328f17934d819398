import { test } from "node:test";
import assert from "node:assert/strict";
import { Election } from "../../src/election.js";
import { FakeLocks, settle } from "../support/fakes.js";

function candidate(locks, roles, name = "halley:k") {
  const e = new Election({ locks, name, onRole: (leader) => roles.push(leader), log: () => {} });
  e.start();
  return e;
}

test("the first tab leads, the others follow", async () => {
  const locks = new FakeLocks();
  const a = [];
  const b = [];
  const c = [];
  candidate(locks, a);
  await settle();
  candidate(locks, b);
  candidate(locks, c);
  await settle();
  assert.deepEqual(a, [true]);
  assert.deepEqual(b, [false]);
  assert.deepEqual(c, [false]);
});

test("when the leader leaves, the next waiting tab takes over, one at a time", async () => {
  const locks = new FakeLocks();
  const a = [];
  const b = [];
  const c = [];
  const ea = candidate(locks, a);
  await settle();
  const eb = candidate(locks, b);
  await settle();
  candidate(locks, c);
  await settle();
  ea.stop();
  await settle();
  assert.deepEqual(b, [false, true], "b, first in the queue, leads");
  assert.deepEqual(c, [false], "c still follows");
  eb.stop();
  await settle();
  assert.deepEqual(c, [false, true]);
});

test("a follower that leaves gives up its place in the queue", async () => {
  const locks = new FakeLocks();
  const a = [];
  const b = [];
  const c = [];
  const ea = candidate(locks, a);
  await settle();
  const eb = candidate(locks, b);
  await settle();
  candidate(locks, c);
  await settle();
  eb.stop();
  ea.stop();
  await settle();
  assert.deepEqual(b, [false]);
  assert.deepEqual(c, [false, true]);
});

test("different connections elect separately", async () => {
  const locks = new FakeLocks();
  const a = [];
  const b = [];
  candidate(locks, a, "halley:one");
  candidate(locks, b, "halley:two");
  await settle();
  assert.deepEqual(a, [true]);
  assert.deepEqual(b, [true]);
});

test("without navigator.locks every tab leads itself", () => {
  const roles = [];
  candidate(undefined, roles);
  assert.deepEqual(roles, [true]);
});

test("locks that refuse (opaque origins) fall back to leading", async () => {
  const roles = [];
  const locks = { request: () => Promise.reject(new Error("SecurityError")) };
  candidate(locks, roles);
  await settle();
  assert.deepEqual(roles, [true]);
});
