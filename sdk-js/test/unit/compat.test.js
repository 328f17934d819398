// The original API's methods and their behaviour, one tab, fake socket.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CometServerApi } from "../../src/compat.js";
import { Halley } from "../../src/modern.js";
import { FakeClock, SocketLog, fakeEnv, settle } from "../support/fakes.js";

const OPTS = { dev_id: 7, user_id: 5, user_key: "hash5", node: "127.0.0.1:8087" };
const METHODS = [
  "start", "stop", "restart", "subscription", "unsubscription", "unsubscriptionAll", "web_pipe_send",
  "multi_web_pipe_send", "get_pipe_log", "count_users_in_pipe", "getTrackPipeUsers", "getUserData",
  "onAuthSuccess", "onAuthFalill", "isAuthorized", "isMaster", "isConnected", "getUserId", "getUserKey",
  "getRealUserKey", "getDevId", "getUUID", "getTabUUID", "setLogLevel", "getLogLevel",
];

function oneTab(location) {
  const t = { clock: new FakeClock(), sockets: new SocketLog(), location };
  t.env = fakeEnv(t);
  t.api = new CometServerApi(undefined, t.env);
  t.open = () => {
    t.sockets.last.serverOpen();
    t.sockets.last.serverSend({ authorized: true, data: "hash5", event: "serverInfo", pipe: "sys" });
  };
  t.push = (frame) => t.sockets.last.serverSend(frame);
  t.sent = () => t.sockets.last.sent;
  return t;
}

test("every public method of the 4.08 API is there", () => {
  const api = oneTab().api;
  for (const m of METHODS) assert.equal(typeof api[m], "function", m);
  assert.equal(api.version, "4.08");
});

test("the connect URL and the getters", () => {
  const t = oneTab();
  assert.equal(t.api.isMaster(), undefined);
  t.api.start(OPTS);
  const uuid = t.api.getUUID();
  assert.match(uuid, /^[A-Za-z0-9_-]{32}$/);
  assert.equal(t.env.storage.getItem("comet_server_uuid"), uuid);
  assert.equal(t.sockets.last.url, `ws://127.0.0.1:8087/ws/sesion=hash5&myid=5&devid=7&v=4.08&uuid=${uuid}&api=js&msg_after=`);
  assert.equal(t.api.getUserId(), 5);
  assert.equal(t.api.getUserKey(), "hash5");
  assert.equal(t.api.getDevId(), 7);
  assert.match(t.api.getTabUUID(), /^[A-Za-z0-9]{16}$/);
  assert.equal(t.api.isMaster(), true, "no locks here: the tab leads itself");
});

test("the node defaults to the page's host, wss on https pages", () => {
  const t = oneTab({ host: "app.example.com", protocol: "https:", href: "https://app.example.com/" });
  t.api.start({ dev_id: 1 });
  assert.match(t.sockets.last.url, /^wss:\/\/app\.example\.com\/ws\/sesion=&myid=0&devid=1&v=4\.08&uuid=/);
});

test("a missing dev_id is a clear error and opens nothing", () => {
  const t = oneTab();
  assert.equal(t.api.start({ node: "x" }), false);
  assert.equal(t.sockets.sockets.length, 0);
  assert.match(t.env.errors[0], /dev_id must be your tenant's number/);
});

test("subscription forms: pipe, pipe.event, msg, msg.event, #pipe, '' and a function", () => {
  const t = oneTab();
  const got = [];
  const api = t.api;
  api.subscription("chat", (m) => got.push(["chat", m.data]));
  api.subscription("chat.join", (m) => got.push(["chat.join", m.data]));
  api.subscription("msg", (m) => got.push(["msg", m.data]));
  api.subscription("msg.alert", (m) => got.push(["msg.alert", m.data]));
  api.subscription("#web_x", (m) => got.push(["#web_x", m.data.number_messages]));
  api.subscription("", (m) => got.push(["all", m.server_info.pipe]));
  api.subscription((m) => got.push(["fn", m.server_info.pipe]));
  api.start(OPTS);
  t.open();
  assert.deepEqual(t.sent(), ["subscription\nchat"], "msg and #pipe are not sent to the server");
  t.push({ data: "a", event: "join", message_send_time: 1, pipe: "chat" });
  t.push({ data: "b", event: "alert", pipe: "msg" });
  t.push({ data: { message: "1", number_messages: 0 }, event: "answer", pipe: "_answer_to_web_x" });
  assert.deepEqual(got, [
    ["chat", "a"], ["chat.join", "a"], ["all", "chat"], ["fn", "chat"],
    ["msg", "b"], ["msg.alert", "b"], ["all", "msg"], ["fn", "msg"],
    ["#web_x", 0], ["all", "_answer_to_web_x"], ["fn", "_answer_to_web_x"],
  ]);
});

test("payload shape and the serverInfo frame is not a message", () => {
  const t = oneTab();
  const got = [];
  t.api.subscription("", (m) => got.push(m));
  t.api.start(OPTS);
  t.open();
  t.push({ data: '{"x":1}', event: "e", message_send_time: 1, pipe: "chat", user_id: 9 });
  assert.deepEqual(got, [{ data: { x: 1 }, server_info: { user_id: 9, pipe: "chat", event: "e", history: false, marker: undefined, uuid: undefined } }]);
});

test("onAuthSuccess / onAuthFalill run after isAuthorized() changed, once per change", () => {
  const t = oneTab();
  const seen = [];
  t.api.onAuthSuccess(() => seen.push(["ok", t.api.isAuthorized()]));
  t.api.onAuthFalill(() => seen.push(["fail", t.api.isAuthorized()]));
  t.api.start(OPTS);
  assert.equal(t.api.isAuthorized(), undefined);
  t.open();
  t.push({ authorized: true, data: "hash5", event: "serverInfo", pipe: "sys" });
  t.api.restart({ user_key: "wrong" });
  t.sockets.last.serverOpen();
  t.sockets.last.serverSend({ authorized: false, data: "", event: "serverInfo", pipe: "sys" });
  assert.deepEqual(seen, [["ok", true], ["fail", false]]);
  assert.match(t.sockets.last.url, /sesion=wrong&myid=5&devid=7/);
});

test("unsubscription drops the callback, and the pipe once no callback needs it", () => {
  const t = oneTab();
  const got = [];
  const id1 = t.api.subscription("chat", () => got.push(1));
  const id2 = t.api.subscription("chat.e", () => got.push(2));
  t.api.subscription("news", () => got.push(3));
  assert.match(id1, /^chat&&/);
  t.api.start(OPTS);
  t.open();
  assert.equal(t.api.unsubscription(id1), true);
  assert.equal(t.api.unsubscription(id1), false);
  t.clock.advance(60);
  assert.deepEqual(t.sent().at(-1), "subscription\nchat\nnews", "chat.e still needs chat");
  t.api.unsubscription(id2);
  t.clock.advance(60);
  assert.deepEqual(t.sent().at(-1), "subscription\nnews");
  t.push({ data: "x", event: "e", pipe: "chat" });
  t.api.unsubscriptionAll();
  t.clock.advance(60);
  assert.deepEqual(t.sent().at(-1), "subscription\n");
  t.push({ data: "x", event: "e", pipe: "news" });
  assert.deepEqual(got, []);
  assert.equal(t.api.unsubscription(undefined), false);
});

test("invalid pipe names: a console error, false, and nothing sent", () => {
  const t = oneTab();
  t.api.start(OPTS);
  t.open();
  assert.equal(t.api.subscription("bad name!", () => {}), false);
  assert.equal(t.api.subscription("x".repeat(64), () => {}), false);
  t.clock.advance(60);
  assert.deepEqual(t.sent(), []);
  assert.match(t.env.errors[0], /^\[halley\] Invalid pipe name "bad name!": a pipe name is 2 to 63 characters/);
  assert.equal(t.api.web_pipe_send("chat", "e", {}), undefined);
  assert.match(t.env.errors.at(-1), /web_pipe_send needs a pipe that begins with web_/);
});

test("web_pipe_send, both signatures, and commands queued before the socket opens", () => {
  const t = oneTab();
  t.api.start(OPTS);
  t.api.web_pipe_send("web_chat", "say", { a: 1 });
  t.api.web_pipe_send("web_chat.say", "it's");
  t.api.web_pipe_send("web_chat", "no dot");
  assert.equal(t.api.web_pipe_send("web_chat", "e"), true);
  assert.equal(t.api.web_pipe_send("web_chat"), false);
  t.open();
  assert.deepEqual(t.sent(), [
    'web_pipe2\nweb_chat\nsay\n*\n{"a":1}',
    'web_pipe2\nweb_chat\nsay\n*\n"it\'s"',
    'web_pipe2\nweb_chat\nundefined\n*\n"no dot"',
    'web_pipe2\nweb_chat\nundefined\n*\n"e"',
  ]);
});

test("multi_web_pipe_send: sent count times, delivered once", () => {
  const sender = oneTab();
  sender.api.start(OPTS);
  sender.open();
  sender.api.multi_web_pipe_send("web_chat", "e", { v: 1 }, 3, 1000);
  sender.clock.advance(2500);
  const sends = sender.sent().filter((s) => s.startsWith("web_pipe2"));
  assert.equal(sends.length, 3);
  const body = sends[0].split("\n")[4];
  assert.match(JSON.parse(body)._cometApi_uuid, /^jsapi[A-Za-z0-9]{11}$/);

  const receiver = oneTab();
  const got = [];
  receiver.api.subscription("web_chat", (m) => got.push(m.data));
  receiver.api.start(OPTS);
  receiver.open();
  for (const s of sends) receiver.push({ data: s.split("\n")[4], event: "e", pipe: "web_chat", user_id: 5 });
  assert.deepEqual(got, [{ v: 1 }]);
});

test("frames with a uuid already seen are dropped", () => {
  const t = oneTab();
  const got = [];
  t.api.subscription("chat", (m) => got.push(m.data));
  t.api.start(OPTS);
  t.open();
  t.push({ data: "1", event: "e", pipe: "chat", uuid: "u1" });
  t.push({ data: "1", event: "e", pipe: "chat", uuid: "u1" });
  t.push({ data: "2", event: "e", pipe: "chat", uuid: "u2" });
  assert.deepEqual(got, [1, 2]);
});

test("get_pipe_log subscribes the callback and asks for the history", () => {
  const t = oneTab();
  const got = [];
  t.api.start(OPTS);
  t.open();
  assert.equal(t.api.get_pipe_log("chat", (m) => got.push([m.data, m.server_info.history])), true);
  assert.match(t.sent().at(-1), /^pipe_log\nchat\n[A-Za-z0-9]{10}\n$/);
  t.push({ data: "old", event: "e", fromQueue: true, message_send_time: 1, pipe: "chat", user_id: 0 });
  t.push({ data: "new", event: "e", message_send_time: 2, pipe: "chat" });
  assert.deepEqual(got, [["old", true], ["new", false]]);
  assert.equal(t.api.get_pipe_log(""), false);
});

test("getTrackPipeUsers and getUserData: marker answers, argument checks", () => {
  const t = oneTab();
  t.api.start(OPTS);
  t.open();
  let users = null;
  let data = null;
  t.api.getTrackPipeUsers("track_room", (m) => (users = m.data));
  const m1 = t.sent().at(-1).split("\n")[2];
  assert.match(t.sent().at(-1), /^track_pipe_users\ntrack_room\n/);
  t.api.getUserData(12, (m) => (data = m.data));
  assert.match(t.sent().at(-1), /^user_data\n[A-Za-z0-9]{10}\n12$/);
  const m2 = t.sent().at(-1).split("\n")[1];
  t.push({ _info: "answer for track_pipe_users", data: [{ user_id: 5, uuid: "u" }], event: "answer", marker: m1, pipe: "_answer" });
  t.push({ data: { user_data: "{}", user_id: 12 }, event: "answer", marker: m2, pipe: "_answer" });
  assert.deepEqual(users, [{ user_id: 5, uuid: "u" }]);
  assert.deepEqual(data, { user_data: "{}", user_id: 12 });
  assert.equal(t.api.getTrackPipeUsers("room", () => {}), undefined);
  assert.equal(t.api.getUserData("12a", () => {}), undefined);
  assert.equal(t.env.errors.length, 2);
});

test("server error frames are shown on the console; jscode is never run", () => {
  const t = oneTab();
  t.api.start(OPTS);
  t.open();
  t.push({ data: { code: "403", error: "Too many letters" }, event: "error", message_send_time: 1, pipe: "sys" });
  assert.match(t.env.errors.at(-1), /server error: Too many letters/);
  globalThis.__halleyRan = false;
  t.push({ data: "x", jscode: "globalThis.__halleyRan = true", pipe: "sys" });
  assert.equal(globalThis.__halleyRan, false);
});

test("a fatal connect error (unknown dev_id) stops the reconnects", () => {
  const t = oneTab();
  t.api.start(OPTS);
  t.sockets.last.serverOpen();
  t.push({ api_data: "for major_version < 4", data: '{"error":"Error code 406(x)","error_code":406,"info":"Closed"}', event: "error", event_name: "error", pipe: "sys" });
  t.sockets.last.serverClose(1008);
  t.clock.advance(120000);
  assert.equal(t.sockets.sockets.length, 1);
});

test("log level persists in localStorage comet_LogLevel", () => {
  const t = oneTab();
  assert.equal(t.api.getLogLevel(), 0);
  t.api.setLogLevel(3);
  assert.equal(t.env.storage.getItem("comet_LogLevel"), "3");
  const again = new CometServerApi(undefined, t.env);
  assert.equal(again.getLogLevel(), 3);
});

test("start(opt, callBack): the callback runs once the connection is up", () => {
  const t = oneTab();
  let calls = 0;
  t.api.start(OPTS, () => calls++);
  assert.equal(calls, 0);
  t.open();
  t.sockets.last.serverClose(1006);
  t.clock.advance(1000);
  t.open();
  assert.equal(calls, 1);
});

test("modern API: on() returns its remover; publish/countUsers/userData resolve; timeouts reject", async () => {
  const t = { clock: new FakeClock(), sockets: new SocketLog() };
  t.env = fakeEnv(t);
  const comet = new Halley({ devId: 7, userId: 5, userKey: "hash5", node: "h:1" }, t.env);
  const got = [];
  const off = comet.on("chat", (m) => got.push(m.data));
  t.sockets.last.serverOpen();
  t.sockets.last.serverSend({ authorized: true, data: "hash5", event: "serverInfo", pipe: "sys" });
  assert.equal(comet.authorized, true);
  assert.equal(comet.connected, true);
  t.sockets.last.serverSend({ data: "1", event: "e", pipe: "chat" });
  off();
  t.sockets.last.serverSend({ data: "2", event: "e", pipe: "chat" });
  assert.deepEqual(got, [1]);
  assert.throws(() => comet.on("bad name", () => {}), /invalid subscription/);

  const published = comet.publish("web_chat", "say", { a: 1 });
  t.sockets.last.serverSend({ data: { message: '{"a":1}', number_messages: 1 }, event: "answer", pipe: "_answer_to_web_chat" });
  assert.deepEqual(await published, { message: '{"a":1}', number_messages: 1 });

  const counted = comet.countUsers("web_chat");
  const marker = t.sockets.last.sent.at(-1).split("\n")[2];
  t.sockets.last.serverSend({ data: { user_in_pipe: 3 }, event: "user_in_pipe", marker, pipe: "_answer_pipe_count" });
  assert.equal(await counted, 3);

  const legacyCount = comet.countUsers("web_chat");
  const marker2 = t.sockets.last.sent.at(-1).split("\n")[2];
  t.sockets.last.serverSend({ data: ["user_in_pipe", 8], event: "user_in_pipe", marker: marker2, pipe: "_answer_pipe_count" });
  assert.equal(await legacyCount, 8, "the reference server's array answer is read too");

  const data = comet.userData(12);
  const marker3 = t.sockets.last.sent.at(-1).split("\n")[1];
  t.sockets.last.serverSend({ data: { user_data: "hello", user_id: 12 }, event: "answer", marker: marker3, pipe: "_answer" });
  assert.equal(await data, "hello");

  const late = comet.trackUsers("track_x", { timeoutMs: 1000 });
  t.clock.advance(1000);
  await assert.rejects(late, /no answer to "track users of track_x" within 1000 ms/);
  await assert.rejects(comet.publish("chat", "e", 1), /begins with web_/);
  comet.close();
  assert.equal(comet.connected, false);
  await settle();
});

test("start() again with the same options keeps the connection; restart() reconnects", () => {
  const t = oneTab();
  t.api.start(OPTS);
  t.open();
  t.api.start(OPTS);
  t.api.start({ dev_id: 7 });
  assert.equal(t.sockets.sockets.length, 1);
  t.api.restart();
  assert.equal(t.sockets.sockets.length, 2);
  assert.deepEqual(t.sockets.sockets[0].closedByPage, { code: 1000, reason: "stop" });
});

test("commands given before start() are sent once connected; unsubscriptionAll keeps pending answers", () => {
  const t = oneTab();
  let count = null;
  t.api.count_users_in_pipe("web_x", (m) => (count = m.data.user_in_pipe));
  t.api.web_pipe_send("web_x", "e", 1);
  t.api.subscription("chat", () => {});
  t.api.unsubscriptionAll();
  t.api.start(OPTS);
  t.open();
  const sent = t.sent();
  assert.match(sent[0], /^pipe_count\nweb_x\n/);
  assert.equal(sent[1], "web_pipe2\nweb_x\ne\n*\n1");
  t.push({ data: { user_in_pipe: 1 }, event: "user_in_pipe", marker: sent[0].split("\n")[2], pipe: "_answer_pipe_count" });
  assert.equal(count, 1);
});
