import { test } from "node:test";
import assert from "node:assert/strict";
import { parseSubscriptionName, splitSendTarget, sendTargetError, answeredPipe } from "../../src/names.js";

test("every name form of the original", () => {
  assert.deepEqual(parseSubscriptionName("chat"), { kind: "pipe", signal: "chat", pipe: "chat", event: undefined });
  assert.deepEqual(parseSubscriptionName("chat.msg"), { kind: "pipe", signal: "chat.msg", pipe: "chat", event: "msg" });
  assert.deepEqual(parseSubscriptionName("msg"), { kind: "msg", signal: "msg" });
  assert.deepEqual(parseSubscriptionName("msg.alert"), { kind: "msg", signal: "msg.alert" });
  assert.deepEqual(parseSubscriptionName("#web_chat"), { kind: "answer", signal: "_answer_to_web_chat" });
  assert.deepEqual(parseSubscriptionName("answer_to_web_chat"), { kind: "answer", signal: "_answer_to_web_chat" });
  assert.deepEqual(parseSubscriptionName(""), { kind: "all", signal: "comet_server_msg" });
  assert.deepEqual(parseSubscriptionName("track_room.subscription"), {
    kind: "pipe",
    signal: "track_room.subscription",
    pipe: "track_room",
    event: "subscription",
  });
});

test("sys and reply pipes stay local: they arrive without a subscription", () => {
  assert.equal(parseSubscriptionName("sys").kind, "local");
  assert.equal(parseSubscriptionName("sys.error").kind, "local");
  assert.equal(parseSubscriptionName("_answer_pipe_count").kind, "local");
});

test("invalid names are refused with a message that says the rule", () => {
  for (const bad of ["a", "has space", "x".repeat(64), "chat.", "a.b.c", "chat.ev!", "kanał", "#", "msg.", 42]) {
    const r = parseSubscriptionName(bad);
    assert.equal(r.kind, "invalid", String(bad));
    assert.match(r.error, /^Invalid pipe name .*: /);
  }
  assert.match(parseSubscriptionName("has space").error, /2 to 63 characters of A-Z a-z 0-9 _ -/);
  assert.equal(parseSubscriptionName("x".repeat(63)).kind, "pipe");
});

test("web_pipe_send's two signatures", () => {
  assert.deepEqual(splitSendTarget("web_chat", "msg", { a: 1 }, 3), { pipe: "web_chat", event: "msg", msg: { a: 1 } });
  assert.deepEqual(splitSendTarget("web_chat.msg", { a: 1 }, undefined, 2), { pipe: "web_chat", event: "msg", msg: { a: 1 } });
  // The original sent the event "undefined" when the two-argument form had no dot.
  assert.deepEqual(splitSendTarget("web_chat", "hi", undefined, 2), { pipe: "web_chat", event: "undefined", msg: "hi" });
});

test("only web_, @web_ and webauth_ pipes can be published to from a browser", () => {
  assert.equal(sendTargetError("web_chat", "msg"), null);
  assert.equal(sendTargetError("@web_chat", "msg"), null);
  assert.equal(sendTargetError("webauth_chat", ""), null);
  assert.match(sendTargetError("chat", "msg"), /should begin with|needs a pipe that begins with web_/);
  assert.match(sendTargetError("web_chat", "bad event"), /Invalid event name/);
});

test("delivery reports name the pipe they answer", () => {
  assert.equal(answeredPipe("_answer_to_web_chat"), "web_chat");
  assert.equal(answeredPipe("web_chat"), null);
  assert.equal(answeredPipe(undefined), null);
});
