// Private messages with ids (issue 14): the msg_after URL parameter, dedupe by id, the msg_recovery signal,
// reconnects, leader hand-over between tabs, a reloaded tab.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CometServerApi } from "../../src/compat.js";
import { memoryStorage } from "../../src/env.js";
import { Inbox, INBOX_KEY, isMsgRecoveryFrame, msgAfterParam } from "../../src/inbox.js";
import { FakeClock, SocketLog, ChannelNet, FakeLocks, fakeEnv, settle } from "../support/fakes.js";

const OPTS = { dev_id: 7, user_id: 5, user_key: "hash5", node: "127.0.0.1:8087" };
const ID = (n) => `01890a5d-ac96-774b-bcce-${String(n).padStart(12, "0")}`;
const pm = (n, text) => ({ data: text, event: "e", id: ID(n), pipe: "msg" });
const SIGNAL = { data: { recovered: false }, event: "msg_recovery", pipe: "msg" };

function browser({ shared = true, session } = {}) {
  const b = { clock: new FakeClock(), sockets: new SocketLog(), storage: memoryStorage() };
  if (shared) {
    b.net = new ChannelNet();
    b.locks = new FakeLocks();
  }
  b.tab = () => new CometServerApi(undefined, { ...fakeEnv(b), session: session || null });
  return b;
}

async function greet(b) {
  b.sockets.last.serverOpen();
  b.sockets.last.serverSend({ authorized: true, data: "hash5", event: "serverInfo", pipe: "sys" });
  await settle();
  b.clock.advance(60);
  await settle();
}

async function reconnect(b) {
  b.sockets.last.serverClose(1006);
  b.clock.advance(60000);
  await settle();
}

const after = (url) => new URL(url.replace(/^ws/, "http").replace("/ws/", "/ws?")).searchParams.get("msg_after");

test("Inbox: first time per id, the last one accepted, bounded, snapshot and restore", () => {
  const inbox = new Inbox({ max: 3 });
  assert.equal(inbox.accept(pm(1, "a")), true);
  assert.equal(inbox.accept(pm(1, "a")), false);
  assert.equal(inbox.accept({ data: "legacy", event: "e", pipe: "msg" }), true, "no id: always passes");
  assert.equal(inbox.accept({ data: "x", event: "e", id: "not-ours!", pipe: "msg" }), true);
  assert.equal(inbox.accept({ data: "x", event: "e", id: ID(9), pipe: "web_a" }), true, "other pipes");
  for (const n of [2, 3, 4]) assert.equal(inbox.accept(pm(n, "m")), true);
  assert.equal(inbox.last, ID(4));
  assert.equal(inbox.accept(pm(1, "a")), true, "forgotten past max");
  const copy = new Inbox({ max: 3 });
  copy.restore(JSON.parse(JSON.stringify(inbox.snapshot())));
  assert.equal(copy.last, ID(1));
  assert.equal(copy.accept(pm(4, "m")), false);
  copy.restore({ last: "bad id!", ids: ["x y"] });
  assert.equal(copy.last, ID(1), "a malformed snapshot changes nothing");
  assert.equal(msgAfterParam(""), "&msg_after=");
  assert.equal(msgAfterParam(ID(4)), "&msg_after=" + ID(4));
  assert.equal(msgAfterParam("a&b"), "&msg_after=");
  assert.equal(isMsgRecoveryFrame(SIGNAL), true);
  assert.equal(isMsgRecoveryFrame({ ...pm(1, "m"), event: "msg_recovery" }), false, "a message of that event");
});

test("one tab: ids asked for, each message once, resume after the last one, the msg_recovery signal", async () => {
  const b = browser({ shared: false });
  const A = b.tab();
  const got = [];
  const recovery = [];
  A.subscription("msg", (m) => got.push(m.data));
  A.onRecovery("msg", (recovered, position) => recovery.push([recovered, position]));
  A.start(OPTS);
  await settle();
  assert.equal(after(b.sockets.last.url), "", "asked for ids, no last one yet");
  await greet(b);
  for (const f of [pm(1, "one"), pm(2, "two"), pm(1, "one"), pm(3, "three")]) b.sockets.last.serverSend(f);
  await settle();
  assert.deepEqual(got, ["one", "two", "three"]);
  await reconnect(b);
  assert.equal(after(b.sockets.last.url), ID(3));
  await greet(b);
  b.sockets.last.serverSend(pm(3, "three"));
  b.sockets.last.serverSend(SIGNAL);
  b.sockets.last.serverSend(pm(4, "four"));
  await settle();
  assert.deepEqual(got, ["one", "two", "three", "four"]);
  assert.deepEqual(recovery, [[false, null]], "told, and not as a message");
});

test("recovery: false sends no msg_after", async () => {
  const b = browser({ shared: false });
  const A = b.tab();
  A.start({ ...OPTS, recovery: false });
  await settle();
  assert.equal(after(b.sockets.last.url), null);
});

test("leader hand-over: the new leader resumes after the last message it processed", async () => {
  const b = browser();
  const A = b.tab();
  A.subscription("msg", () => {});
  A.start(OPTS);
  await settle();
  const B = b.tab();
  const gotB = [];
  B.subscription("msg", (m) => gotB.push(m.data));
  B.start(OPTS);
  await settle();
  await greet(b);
  assert.equal(A.isMaster(), true);
  b.sockets.last.serverSend(pm(1, "one"));
  b.sockets.last.serverSend(pm(2, "two"));
  await settle();
  A.stop();
  await settle();
  assert.equal(B.isMaster(), true);
  assert.equal(after(b.sockets.last.url), ID(2));
  await greet(b);
  b.sockets.last.serverSend(pm(2, "two"));
  b.sockets.last.serverSend(pm(3, "three"));
  await settle();
  assert.deepEqual(gotB, ["one", "two", "three"]);
});

test("a reloaded tab resumes after its last message (sessionStorage halley_msg)", async () => {
  const session = memoryStorage();
  const b = browser({ shared: false, session });
  const A = b.tab();
  A.start(OPTS);
  await settle();
  await greet(b);
  b.sockets.last.serverSend(pm(5, "five"));
  await settle();
  A.stop();
  assert.equal(JSON.parse(session.getItem(INBOX_KEY)).last, ID(5));
  const reloaded = b.tab();
  const got = [];
  reloaded.subscription("msg", (m) => got.push(m.data));
  reloaded.start(OPTS);
  await settle();
  assert.equal(after(b.sockets.last.url), ID(5));
  await greet(b);
  b.sockets.last.serverSend(pm(5, "five"));
  b.sockets.last.serverSend(pm(6, "six"));
  await settle();
  assert.deepEqual(got, ["six"]);
});

test("hand-over to a tab that processed no message yet: it resumes after the last one the browser processed", async () => {
  const b = browser();
  const A = b.tab();
  A.start(OPTS);
  await settle();
  await greet(b);
  b.sockets.last.serverSend(pm(1, "one"));
  await settle();
  const B = b.tab();
  const gotB = [];
  B.subscription("msg", (m) => gotB.push(m.data));
  B.start(OPTS);
  await settle();
  assert.equal(B.isMaster(), false);
  A.stop();
  await settle();
  assert.equal(B.isMaster(), true);
  assert.equal(after(b.sockets.last.url), ID(1));
  await greet(b);
  b.sockets.last.serverSend(pm(2, "two"));
  await settle();
  assert.deepEqual(gotB, ["two"]);
  B.stop();
  await settle();
  const fresh = b.tab();
  fresh.start(OPTS);
  await settle();
  assert.equal(fresh.isMaster(), true);
  assert.equal(after(b.sockets.last.url), "", "a page that starts alone begins with what comes next");
});
