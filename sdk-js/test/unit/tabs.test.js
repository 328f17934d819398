// Several tabs of one browser sharing one socket, with fake locks, channel and WebSocket.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CometServerApi } from "../../src/compat.js";
import { memoryStorage } from "../../src/env.js";
import { FakeClock, SocketLog, ChannelNet, FakeLocks, fakeEnv, settle } from "../support/fakes.js";

const OPTS = { dev_id: 7, user_id: 5, user_key: "hash5", node: "127.0.0.1:8087" };

function browser() {
  const b = { clock: new FakeClock(), sockets: new SocketLog(), net: new ChannelNet(), locks: new FakeLocks(), storage: memoryStorage() };
  b.tab = () => new CometServerApi(undefined, fakeEnv(b));
  return b;
}

/** Opens the newest socket and lets the server greet it. */
async function serverAccepts(b, authorized = true) {
  b.sockets.last.serverOpen();
  b.sockets.last.serverSend({ authorized, data: authorized ? "hash5" : "", event: "serverInfo", pipe: "sys", server: "Halley" });
  await settle();
}

test("two tabs: one socket, subscribed to the union, every message once per tab", async () => {
  const b = browser();
  const A = b.tab();
  const gotA = [];
  A.subscription("chat", (m) => gotA.push(m.data));
  A.start(OPTS);
  await settle();
  const B = b.tab();
  const gotB = [];
  B.subscription("chat", (m) => gotB.push(m.data));
  B.subscription("news.flash", (m) => gotB.push("news:" + m.data));
  B.start(OPTS);
  await settle();
  assert.equal(b.sockets.sockets.length, 1, "one socket for both tabs");
  assert.equal(A.isMaster(), true);
  assert.equal(B.isMaster(), false);
  await serverAccepts(b);
  b.clock.advance(60);
  await settle();
  assert.deepEqual(b.sockets.last.sent.at(-1), "subscription\nchat\nnews");
  assert.equal(A.isConnected(), true);
  assert.equal(B.isConnected(), true);

  b.sockets.last.serverSend({ data: '{"n":1}', event: "msg", message_send_time: 1, pipe: "chat" });
  b.sockets.last.serverSend({ data: "hot", event: "flash", message_send_time: 1, pipe: "news" });
  b.sockets.last.serverSend({ data: "cold", event: "other", message_send_time: 1, pipe: "news" });
  await settle();
  assert.deepEqual(gotA, [{ n: 1 }]);
  assert.deepEqual(gotB, [{ n: 1 }, "news:hot"]);
});

test("authorization reaches every tab, and callbacks see isAuthorized() already true", async () => {
  const b = browser();
  const A = b.tab();
  const B = b.tab();
  const seen = [];
  A.onAuthSuccess(() => seen.push(["A", A.isAuthorized()]));
  B.onAuthSuccess(() => seen.push(["B", B.isAuthorized()]));
  A.start(OPTS);
  await settle();
  B.start(OPTS);
  await settle();
  assert.equal(B.isAuthorized(), undefined);
  await serverAccepts(b);
  assert.deepEqual(seen.sort(), [["A", true], ["B", true]]);
  assert.equal(B.getRealUserKey(), "hash5");

  const C = b.tab();
  C.start(OPTS);
  await settle();
  assert.equal(C.isAuthorized(), true, "a tab that joins later learns the state from the leader");
  assert.equal(C.isConnected(), true);
});

test("answers go to the tab that asked; other tabs' catch-all callbacks do not see them", async () => {
  const b = browser();
  const A = b.tab();
  const B = b.tab();
  const allA = [];
  A.subscription("", (m) => allA.push(m.server_info.pipe));
  A.start(OPTS);
  await settle();
  B.start(OPTS);
  await settle();
  await serverAccepts(b);
  let count = null;
  B.count_users_in_pipe("web_room", (m) => (count = m.data));
  await settle();
  const cmd = b.sockets.last.sent.at(-1);
  assert.match(cmd, /^pipe_count\nweb_room\n[A-Za-z0-9]{10}\n$/);
  const marker = cmd.split("\n")[2];
  b.sockets.last.serverSend({ data: { user_in_pipe: 4 }, event: "user_in_pipe", marker, message_send_time: 1, pipe: "_answer_pipe_count" });
  await settle();
  assert.deepEqual(count, { user_in_pipe: 4 });
  assert.deepEqual(allA, []);
});

test("web_pipe_send from a follower: report to the sender, message to the sibling tabs once", async () => {
  const b = browser();
  const A = b.tab();
  const B = b.tab();
  const gotA = [];
  const gotB = [];
  const reportB = [];
  A.subscription("web_chat", (m) => gotA.push([m.data, m.server_info.user_id]));
  B.subscription("web_chat", (m) => gotB.push(m.data));
  B.subscription("#web_chat", (m) => reportB.push(m.data.number_messages));
  A.start(OPTS);
  await settle();
  B.start(OPTS);
  await settle();
  await serverAccepts(b);
  B.web_pipe_send("web_chat", "say", { text: "it's \\ \"q\"" });
  await settle();
  const text = JSON.stringify({ text: "it's \\ \"q\"" });
  assert.equal(b.sockets.last.sent.at(-1), "web_pipe2\nweb_chat\nsay\n*\n" + text);
  // The server relays to other connections only; this connection gets the report.
  b.sockets.last.serverSend({ data: { message: text, number_messages: 2 }, event: "answer", message_send_time: 3, pipe: "_answer_to_web_chat" });
  await settle();
  assert.deepEqual(reportB, [2]);
  assert.deepEqual(gotA, [[{ text: "it's \\ \"q\"" }, 5]]);
  assert.deepEqual(gotB, [], "the sender does not get its own message, as with its own socket");
});

test("the leader tab closes: the next tab takes the socket over and restores the subscriptions", async () => {
  const b = browser();
  const A = b.tab();
  const B = b.tab();
  const C = b.tab();
  A.subscription("alpha", () => {});
  B.subscription("beta", () => {});
  const gotC = [];
  C.subscription("gamma", (m) => gotC.push(m.data));
  for (const t of [A, B, C]) {
    t.start(OPTS);
    await settle();
  }
  await serverAccepts(b);
  b.clock.advance(60);
  assert.equal(b.sockets.last.sent.at(-1), "subscription\nalpha\nbeta\ngamma");

  A.stop();
  await settle();
  assert.equal(b.sockets.sockets[0].closedByPage.code, 1000);
  assert.equal(B.isMaster(), true);
  assert.equal(C.isMaster(), false);
  assert.equal(b.sockets.sockets.length, 2, "the new leader opened the one new socket");
  await serverAccepts(b);
  b.clock.advance(60);
  await settle();
  b.clock.advance(60);
  assert.equal(b.sockets.last.sent.at(-1), "subscription\nbeta\ngamma");
  assert.equal(C.isConnected(), true);
  b.sockets.last.serverSend({ data: "after", event: "e", pipe: "gamma" });
  await settle();
  assert.deepEqual(gotC, ["after"]);
});

test("tabs with other credentials do not share; share:false opens a socket of its own", async () => {
  const b = browser();
  b.tab().start(OPTS);
  await settle();
  b.tab().start({ ...OPTS, user_id: 6, user_key: "hash6" });
  await settle();
  b.tab().start({ ...OPTS, share: false });
  await settle();
  assert.equal(b.sockets.sockets.length, 3);
});

test("a follower's commands made before the election answered are not lost", async () => {
  const b = browser();
  const A = b.tab();
  A.start(OPTS);
  await settle();
  await serverAccepts(b);
  const B = b.tab();
  B.start(OPTS);
  B.get_pipe_log("chat", () => {});
  await settle();
  assert.match(b.sockets.last.sent.at(-1), /^pipe_log\nchat\n/);
});

test("a follower page hidden (bfcache) stops counting in the union, and counts again when shown", async () => {
  const b = browser();
  const A = b.tab();
  A.subscription("alpha", () => {});
  A.start(OPTS);
  await settle();
  const B = b.tab();
  B.subscription("beta", () => {});
  B.start(OPTS);
  await settle();
  await serverAccepts(b);
  b.clock.advance(60);
  assert.equal(b.sockets.last.sent.at(-1), "subscription\nalpha\nbeta");
  B.client.group.hide();
  await settle();
  b.clock.advance(60);
  assert.equal(b.sockets.last.sent.at(-1), "subscription\nalpha");
  B.client.group.show();
  await settle();
  b.clock.advance(60);
  assert.equal(b.sockets.last.sent.at(-1), "subscription\nalpha\nbeta");
});
