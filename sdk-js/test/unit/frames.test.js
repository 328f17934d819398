import { test } from "node:test";
import assert from "node:assert/strict";
import { parseFrames, toPayload, isServerInfo, authorizedOf, errorCode, errorText, frameEvent } from "../../src/frames.js";
import { decodeData, stripslashes } from "../../src/data.js";

test("a modern frame parses as it is, apostrophes and backslashes included", () => {
  // The original replaced \' by ' in the whole frame first, which broke this JSON and dropped the frame.
  const text = String.raw`{"data":"{\"text\":\"it's \\\\ a \\\"q\\\"\"}","event":"msg","message_send_time":1,"pipe":"web_chat","user_id":5}`;
  const { frames, bad } = parseFrames(text);
  assert.deepEqual(bad, []);
  const p = toPayload(frames[0]);
  assert.deepEqual(p.data, { text: 'it\'s \\ a "q"' });
  assert.deepEqual(p.server_info, { user_id: 5, pipe: "web_chat", event: "msg", history: false, marker: undefined, uuid: undefined });
});

test("a frame whose text holds an escaped apostrophe is delivered (the original dropped it)", () => {
  const frame = JSON.stringify({ data: String.raw`{"text":"it\'s"}`, event: "msg", pipe: "chat" });
  const { frames } = parseFrames(frame);
  assert.equal(frames.length, 1);
  assert.deepEqual(toPayload(frames[0]).data, { text: "it's" });
});

test("pre-4.0 shapes: event_name, api_data, data as JSON text, several objects in one frame", () => {
  const legacy = [
    JSON.stringify({ api_data: "for major_version < 4", data: '{"a":1}', event: "ev", event_name: "ev", pipe: "p1" }),
    JSON.stringify({ data: "plain", event_name: "old", pipe: "p2" }),
  ].join("\n");
  const { frames, bad } = parseFrames(legacy);
  assert.equal(frames.length, 2);
  assert.deepEqual(bad, []);
  assert.deepEqual(toPayload(frames[0]).data, { a: 1 });
  assert.equal(frameEvent(frames[1]), "old");
  assert.equal(toPayload(frames[1]).server_info.event, "old");
  assert.equal(toPayload(frames[1]).data, "plain");
});

test("the sender prefix of very old servers (A::<id>;)", () => {
  const p = toPayload({ data: 'A::17;{"x":2}', event: "e", pipe: "p" });
  assert.equal(p.server_info.user_id, 17);
  assert.deepEqual(p.data, { x: 2 });
});

test("lines that are not JSON are reported, the others kept", () => {
  const { frames, bad } = parseFrames('{"data":"a","pipe":"p"}\nnot json');
  assert.equal(frames.length, 1);
  assert.deepEqual(bad, ["not json"]);
  assert.deepEqual(parseFrames("[1,2]").frames, []);
});

test("serverInfo: boolean, or the string 'true' from older servers", () => {
  const info = { authorized: true, data: "hash", event: "serverInfo", pipe: "sys" };
  assert.equal(isServerInfo(info), true);
  assert.equal(authorizedOf(info), true);
  assert.equal(authorizedOf({ ...info, authorized: "true" }), true);
  assert.equal(authorizedOf({ ...info, authorized: false }), false);
  assert.equal(isServerInfo({ data: "x", event: "serverInfo", pipe: "chat" }), false);
});

test("error frames: code and text, also when data is pre-4.0 JSON text", () => {
  const legacy = { data: JSON.stringify({ error: "Error code 406(unknown dev_id)", error_code: 406, info: "Closed" }), event: "error", pipe: "sys" };
  assert.equal(errorCode(legacy), 406);
  assert.equal(errorText(legacy), "Error code 406(unknown dev_id)");
  const modern = { data: { code: "403", error: "Invalid pipe name length" }, event: "error", pipe: "sys" };
  assert.equal(errorCode(modern), null);
  assert.equal(errorText(modern), "Invalid pipe name length");
  assert.equal(errorCode({ data: "x", event: "msg", pipe: "chat" }), null);
});

test("history replays are marked as history; queued private messages are not", () => {
  assert.equal(toPayload({ data: "x", event: "e", fromQueue: true, pipe: "chat", user_id: 0 }).server_info.history, true);
  assert.equal(toPayload({ data: "x", event: "e", fromQueue: true, pipe: "msg" }).server_info.history, false);
});

test("data: JSON first, then the original's fallbacks for escaped JSON, else the text unchanged", () => {
  assert.deepEqual(decodeData('{"a":"b"}'), { a: "b" });
  assert.equal(decodeData("42"), 42);
  assert.deepEqual(decodeData({ already: "object" }), { already: "object" });
  // addslashes'd JSON, as PHP code escaping for the original server stored it:
  assert.deepEqual(decodeData(String.raw`{\"a\":\"it\'s\"}`), { a: "it's" });
  assert.deepEqual(decodeData(String.raw`{"a":"it\'s"}`), { a: "it's" });
  // Doubly escaped:
  assert.deepEqual(decodeData(String.raw`{\\\"a\\\":1}`), { a: 1 });
  // Plain text is never mangled (the original ran it through stripslashes twice):
  assert.equal(decodeData(String.raw`C:\path\to it's`), String.raw`C:\path\to it's`);
  assert.equal(decodeData("hello"), "hello");
  assert.equal(decodeData(""), "");
});

test("stripslashes is PHP's", () => {
  assert.equal(stripslashes(String.raw`Kevin\'s code`), "Kevin's code");
  assert.equal(stripslashes(String.raw`Kevin\\\'s code`), String.raw`Kevin\'s code`);
  assert.equal(stripslashes(String.raw`a\0b`), "a\u0000b");
});
