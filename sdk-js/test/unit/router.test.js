import { test } from "node:test";
import assert from "node:assert/strict";
import { Router, PENDING_TTL_MS, HISTORY_WINDOW_MS } from "../../src/router.js";

test("ordinary frames go to every tab", () => {
  const r = new Router({ now: () => 0 });
  const f = { data: "x", event: "e", pipe: "chat" };
  assert.deepEqual(r.route(f, 0), [{ frame: f }]);
});

test("an answer with a marker goes to the tab that asked, once", () => {
  const r = new Router({ now: () => 0 });
  r.noteSend("tabB", { marker: "m1" });
  const f = { data: { user_in_pipe: 2 }, event: "user_in_pipe", marker: "m1", pipe: "_answer_pipe_count" };
  assert.deepEqual(r.route(f, 0), [{ to: "tabB", frame: f }]);
  assert.deepEqual(r.route(f, 0), [{ frame: f }], "the marker is forgotten after its answer");
});

test("a delivery report goes to the sender, and the message itself to the other tabs", () => {
  const r = new Router({ now: () => 0 });
  r.noteSend("tabA", { send: { pipe: "web_chat", event: "msg", text: '{"t":1}' } });
  r.noteSend("tabB", { send: { pipe: "web_chat", event: "msg", text: '{"t":2}' } });
  const answer = { data: { message: '{"t":2}', number_messages: 3 }, event: "answer", message_send_time: 9, pipe: "_answer_to_web_chat" };
  assert.deepEqual(r.route(answer, 5), [
    { to: "tabB", frame: answer },
    { except: "tabB", frame: { data: '{"t":2}', event: "msg", message_send_time: 9, pipe: "web_chat", user_id: 5 } },
  ]);
  const first = { ...answer, data: { message: '{"t":1}', number_messages: 3 } };
  assert.equal(r.route(first, 5)[0].to, "tabA");
});

test("an @web_ send is echoed without the sender's id, on the pipe without @", () => {
  const r = new Router({ now: () => 0 });
  r.noteSend("tabA", { send: { pipe: "@web_chat", event: "e", text: "1" } });
  const out = r.route({ data: { message: "1", number_messages: 0 }, event: "answer", pipe: "_answer_to_web_chat" }, 7);
  assert.equal(out[1].frame.user_id, 0);
  assert.equal(out[1].frame.pipe, "web_chat");
});

test("history replays go to the tabs that asked, within the window", () => {
  let now = 0;
  const r = new Router({ now: () => now });
  r.noteSend("tabA", { log: "chat" });
  const h = { data: "old", event: "e", fromQueue: true, pipe: "chat", user_id: 0 };
  assert.deepEqual(r.route(h, 0), [{ to: "tabA", frame: h }]);
  assert.deepEqual(r.route({ ...h, pipe: "msg" }, 0), [{ frame: { ...h, pipe: "msg" } }], "queued private messages are for all");
  now = HISTORY_WINDOW_MS + 1;
  assert.deepEqual(r.route(h, 0), [{ frame: h }]);
});

test("pending entries expire and leave with their tab", () => {
  let now = 0;
  const r = new Router({ now: () => now });
  r.noteSend("tabA", { marker: "m1" });
  r.noteSend("tabB", { marker: "m2" });
  r.forget("tabB");
  assert.deepEqual(r.route({ data: 1, marker: "m2", pipe: "_answer" }, 0), [{ frame: { data: 1, marker: "m2", pipe: "_answer" } }]);
  now = PENDING_TTL_MS + 1;
  assert.deepEqual(r.route({ data: 1, marker: "m1", pipe: "_answer" }, 0), [{ frame: { data: 1, marker: "m1", pipe: "_answer" } }]);
});
