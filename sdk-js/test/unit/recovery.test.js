// Positions and recovery (issue 14): subscription2 to a Halley server, dedupe by offset, the subscribed and
// gap frames, reconnects, leader hand-over, the fallback for servers that do not know subscription2.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CometServerApi } from "../../src/compat.js";
import { memoryStorage } from "../../src/env.js";
import { Positions, isSubscribedFrame, isGapFrame } from "../../src/positions.js";
import { subscription2Command } from "../../src/commands.js";
import { GREETING_WAIT_MS } from "../../src/socket.js";
import { FakeClock, SocketLog, ChannelNet, FakeLocks, fakeEnv, settle } from "../support/fakes.js";

const OPTS = { dev_id: 7, user_id: 5, user_key: "hash5", node: "127.0.0.1:8087" };
const HALLEY = "5.7.99-Halley-0.1.0";

function browser({ shared = true, session } = {}) {
  const b = { clock: new FakeClock(), sockets: new SocketLog(), storage: memoryStorage() };
  if (shared) {
    b.net = new ChannelNet();
    b.locks = new FakeLocks();
  }
  b.tab = () => new CometServerApi(undefined, { ...fakeEnv(b), session: session || null });
  return b;
}

/** Opens the newest socket and greets it as `server` does; lets the subscription batch go out. */
async function greet(b, server = HALLEY) {
  b.sockets.last.serverOpen();
  b.sockets.last.serverSend({ authorized: true, data: "hash5", event: "serverInfo", pipe: "sys", server });
  await settle();
  b.clock.advance(60);
  await settle();
}

const msg = (pipe, offset, data) => ({ data, event: "m", message_send_time: 1, offset, pipe });
const subscribed = (pipe, epoch, offset, recovered) => ({
  data: { epoch, offset, recovered },
  event: "subscribed",
  pipe,
});

async function reconnect(b) {
  b.sockets.last.serverClose(1006);
  b.clock.advance(60000);
  await settle();
}

test("Positions: dedupe by offset, subscribed sets the position, lines only with a valid position", () => {
  const p = new Positions();
  assert.equal(p.line("web_a"), "web_a");
  assert.equal(p.accept({ pipe: "web_a", offset: 3 }), true);
  assert.equal(p.get("web_a"), null, "no epoch yet: no position to resume from");
  p.subscribed("web_a", { epoch: "e1", offset: 3, recovered: false });
  assert.deepEqual(p.get("web_a"), { epoch: "e1", offset: 3 });
  assert.equal(p.accept({ pipe: "web_a", offset: 3 }), false);
  assert.equal(p.accept({ pipe: "web_a", offset: 2 }), false);
  assert.equal(p.accept({ pipe: "web_a", offset: 5 }), true, "a skipped offset (own web_pipe2) is no hole");
  assert.equal(p.accept({ pipe: "web_a", data: "legacy" }), true, "frames without an offset always pass");
  assert.equal(p.line("web_a"), "web_a\te1\t5");
  p.subscribed("web_b", { epoch: "bad epoch!", offset: 1, recovered: true });
  assert.equal(p.line("web_b"), "web_b", "an epoch the server would refuse is not sent");
  p.merge({ web_a: { epoch: "e1", offset: 9 }, web_c: { epoch: "e2", offset: 4 }, web_d: { epoch: 1 } });
  assert.deepEqual(p.snapshot(["web_a", "web_c", "web_d"]), {
    web_a: { epoch: "e1", offset: 9 },
    web_c: { epoch: "e2", offset: 4 },
  });
  p.merge({ web_a: { epoch: "e0", offset: 50 } });
  assert.deepEqual(p.get("web_a"), { epoch: "e1", offset: 9 }, "another epoch does not override a known one");
  assert.equal(subscription2Command(["a", "b\tE\t3"]), "subscription2\na\nb\tE\t3");
});

test("the subscribed and gap frames are recognised only in the server's shape", () => {
  assert.equal(isSubscribedFrame(subscribed("web_a", "e", 0, false)), true);
  assert.equal(isSubscribedFrame({ ...msg("web_a", 4, { epoch: "e", offset: 1, recovered: true }), event: "subscribed" }), false);
  assert.equal(isSubscribedFrame({ data: "x", event: "subscribed", pipe: "web_a" }), false);
  assert.equal(isGapFrame({ data: { pipe: "web_a" }, event: "gap", pipe: "web_a" }), true);
  assert.equal(isGapFrame({ data: { pipe: "web_a" }, event: "gap", offset: 3, pipe: "web_a" }), false);
  assert.equal(isGapFrame({ data: "x", event: "gap", pipe: "web_a" }), false);
});

test("a Halley server gets subscription2; callbacks get every offset once, never the subscribed frame", async () => {
  const b = browser();
  const A = b.tab();
  const got = [];
  const all = [];
  const recoveries = [];
  A.subscription("web_a", (m) => got.push(m.data));
  A.subscription((m) => all.push(m.server_info.event));
  A.onRecovery("web_a", (recovered, position) => recoveries.push([recovered, position]));
  A.start(OPTS);
  await settle();
  await greet(b);
  const ws = b.sockets.last;
  assert.equal(ws.sent[0], "subscription2\nweb_a", "first subscribe: no position");
  ws.serverSend(subscribed("web_a", "e1", 10, false));
  ws.serverSend(msg("web_a", 11, "x"));
  ws.serverSend(msg("web_a", 11, "x again"));
  ws.serverSend(msg("web_a", 12, "y"));
  await settle();
  assert.deepEqual(got, ["x", "y"]);
  assert.deepEqual(recoveries, [[false, { epoch: "e1", offset: 10 }]]);
  assert.ok(!all.includes("subscribed"), "the subscribed frame is not a message");
  assert.deepEqual(A.getPosition("web_a"), { epoch: "e1", offset: 12 });
  assert.equal(A.getPosition("web_zz"), null);
});

test("a reconnect resubscribes with the last position; the replay arrives once and onRecovery(true) once", async () => {
  const b = browser();
  const A = b.tab();
  const got = [];
  const recoveries = [];
  A.subscription("web_a", (m) => got.push(m.data));
  A.subscription("web_b", (m) => got.push(m.data));
  A.onRecovery("web_a", (recovered) => recoveries.push(recovered));
  A.start(OPTS);
  await settle();
  await greet(b);
  b.sockets.last.serverSend(subscribed("web_a", "e1", 0, false));
  b.sockets.last.serverSend(subscribed("web_b", "f1", 7, false));
  b.sockets.last.serverSend(msg("web_a", 1, 1));
  b.sockets.last.serverSend(msg("web_a", 2, 2));
  await settle();
  await reconnect(b);
  assert.equal(b.sockets.sockets.length, 2);
  await greet(b);
  assert.equal(b.sockets.last.sent[0], "subscription2\nweb_a\te1\t2\nweb_b\tf1\t7");
  b.sockets.last.serverSend(msg("web_a", 2, 2)); // a repeat (in flight when the old socket went)
  b.sockets.last.serverSend(msg("web_a", 3, 3));
  b.sockets.last.serverSend(msg("web_a", 4, 4));
  b.sockets.last.serverSend(subscribed("web_a", "e1", 4, true));
  b.sockets.last.serverSend(subscribed("web_b", "f1", 7, true));
  b.sockets.last.serverSend(msg("web_a", 5, 5));
  await settle();
  assert.deepEqual(got, [1, 2, 3, 4, 5]);
  assert.deepEqual(recoveries, [false, true]);
});

test("a new epoch (server restart) resets the position: its offsets are delivered", async () => {
  const b = browser();
  const A = b.tab();
  const got = [];
  const recoveries = [];
  A.subscription("web_a", (m) => got.push(m.data));
  A.onRecovery("web_a", (recovered, pos) => recoveries.push([recovered, pos.epoch]));
  A.start(OPTS);
  await settle();
  await greet(b);
  b.sockets.last.serverSend(subscribed("web_a", "e1", 40, false));
  b.sockets.last.serverSend(msg("web_a", 41, "old"));
  await settle();
  await reconnect(b);
  await greet(b);
  assert.equal(b.sockets.last.sent[0], "subscription2\nweb_a\te1\t41");
  b.sockets.last.serverSend(subscribed("web_a", "e2", 0, false));
  b.sockets.last.serverSend(msg("web_a", 1, "new"));
  await settle();
  assert.deepEqual(got, ["old", "new"]);
  assert.deepEqual(recoveries, [
    [false, "e1"],
    [false, "e2"],
  ]);
});

test("a gap frame resubscribes with the last position and is not delivered", async () => {
  const b = browser();
  const A = b.tab();
  const events = [];
  A.subscription((m) => events.push(m.server_info.event));
  A.subscription("web_a", () => {});
  A.start(OPTS);
  await settle();
  await greet(b);
  const ws = b.sockets.last;
  ws.serverSend(subscribed("web_a", "e1", 3, false));
  ws.serverSend(msg("web_a", 4, "x"));
  ws.serverSend({ data: { pipe: "web_a" }, event: "gap", pipe: "web_a" });
  await settle();
  assert.equal(ws.sent.at(-1), "subscription2\nweb_a\te1\t4");
  assert.deepEqual(events.filter((e) => e !== "serverInfo"), ["m"]);
});

test("Positions: after a gap a pipe's live frames are held until its subscribed; history entries pass", () => {
  const p = new Positions();
  p.subscribed("web_a", { epoch: "e1", offset: 4, recovered: false });
  p.gap("web_a");
  assert.equal(p.held({ pipe: "web_a", offset: 2 }), true, "a new epoch's frame: not placeable");
  assert.equal(p.accept({ pipe: "web_a", offset: 9 }), false);
  assert.equal(p.held({ pipe: "web_b", offset: 2 }), false, "other pipes go on");
  const entry = { pipe: "web_a", offset: 1, fromQueue: true };
  assert.equal(p.held(entry), false);
  assert.equal(p.accept(entry), true, "a pipe_log entry is history, not the live position");
  assert.deepEqual(p.get("web_a"), { epoch: "e1", offset: 4 });
  assert.equal(p.line("web_a"), "web_a\te1\t4", "resubscribes with the last position processed");
  p.subscribed("web_a", { epoch: "e2", offset: 2, recovered: false });
  assert.equal(p.held({ pipe: "web_a", offset: 3 }), false);
  assert.equal(p.accept({ pipe: "web_a", offset: 3 }), true);
});

test("after a gap the pipe's frames are dropped until its subscribed, then delivered again", async () => {
  const b = browser();
  const A = b.tab();
  const got = [];
  const recoveries = [];
  A.subscription("web_a", (m) => got.push(m.data));
  A.subscription("web_b", (m) => got.push(m.data));
  A.onRecovery("web_a", (recovered, pos) => recoveries.push([recovered, pos.epoch, pos.offset]));
  A.start(OPTS);
  await settle();
  await greet(b);
  const ws = b.sockets.last;
  ws.serverSend(subscribed("web_a", "e1", 3, false));
  ws.serverSend(subscribed("web_b", "b1", 0, false));
  ws.serverSend(msg("web_a", 4, "a4"));
  ws.serverSend({ data: { pipe: "web_a" }, event: "gap", pipe: "web_a" });
  ws.serverSend(msg("web_a", 2, "new epoch, before the answer"));
  ws.serverSend(msg("web_b", 1, "b1"));
  await settle();
  assert.equal(ws.sent.at(-1), "subscription2\nweb_a\te1\t4\nweb_b\tb1\t0", "the whole set, at once, positions kept");
  ws.serverSend(subscribed("web_a", "e2", 2, false));
  ws.serverSend(msg("web_a", 3, "a3 of e2"));
  await settle();
  assert.deepEqual(got, ["a4", "b1", "a3 of e2"]);
  assert.deepEqual(recoveries.at(-1), [false, "e2", 2]);
});

test("a server that is not Halley gets the original's subscription, frames unchanged", async () => {
  const b = browser();
  const A = b.tab();
  const got = [];
  A.subscription("web_a", (m) => got.push(m.data));
  A.start(OPTS);
  await settle();
  await greet(b, "5.7.0");
  assert.deepEqual(b.sockets.last.sent, ["subscription\nweb_a"]);
  b.sockets.last.serverSend({ data: "x", event: "m", message_send_time: 1, pipe: "web_a" });
  await settle();
  assert.deepEqual(got, ["x"]);
});

test("no greeting in time: the subscription goes out as the original's", async () => {
  const b = browser();
  const A = b.tab();
  A.subscription("web_a", () => {});
  A.start(OPTS);
  await settle();
  b.sockets.last.serverOpen();
  await settle();
  assert.deepEqual(b.sockets.last.sent, [], "waits for the greeting");
  b.clock.advance(GREETING_WAIT_MS);
  await settle();
  assert.deepEqual(b.sockets.last.sent, ["subscription\nweb_a"]);
});

test("recovery: false keeps the original's subscription even with Halley", async () => {
  const b = browser();
  const A = b.tab();
  A.subscription("web_a", () => {});
  A.start({ ...OPTS, recovery: false });
  await settle();
  await greet(b);
  assert.deepEqual(b.sockets.last.sent, ["subscription\nweb_a"]);
});

test("closed 1008 after subscription2 and before any subscribed frame: the next socket uses subscription", async () => {
  const b = browser();
  const A = b.tab();
  A.subscription("web_a", () => {});
  A.start(OPTS);
  await settle();
  await greet(b);
  assert.deepEqual(b.sockets.last.sent, ["subscription2\nweb_a"]);
  b.sockets.last.serverClose(1008);
  b.clock.advance(60000);
  await settle();
  await greet(b);
  assert.deepEqual(b.sockets.last.sent, ["subscription\nweb_a"]);
});

test("leader hand-over: the new leader resubscribes from the positions the tabs processed", async () => {
  const b = browser();
  const A = b.tab();
  A.subscription("web_a", () => {});
  A.start(OPTS);
  await settle();
  const B = b.tab();
  const gotB = [];
  const recB = [];
  B.subscription("web_b", (m) => gotB.push(m.data));
  B.onRecovery("web_b", (recovered) => recB.push(recovered));
  B.start(OPTS);
  await settle();
  await greet(b);
  assert.equal(A.isMaster(), true);
  assert.equal(b.sockets.last.sent[0], "subscription2\nweb_a\nweb_b");
  b.sockets.last.serverSend(subscribed("web_a", "ea", 1, false));
  b.sockets.last.serverSend(subscribed("web_b", "eb", 5, false));
  b.sockets.last.serverSend(msg("web_b", 6, "six"));
  await settle();
  assert.deepEqual(B.getPosition("web_b"), { epoch: "eb", offset: 6 }, "a follower tracks its pipes too");

  A.stop();
  await settle();
  assert.equal(B.isMaster(), true);
  await greet(b);
  assert.equal(b.sockets.last.sent[0], "subscription2\nweb_b\teb\t6");
  b.sockets.last.serverSend(msg("web_b", 6, "six again"));
  b.sockets.last.serverSend(msg("web_b", 7, "seven"));
  b.sockets.last.serverSend(subscribed("web_b", "eb", 7, true));
  await settle();
  assert.deepEqual(gotB, ["six", "seven"]);
  assert.deepEqual(recB, [false, true]);
});

test("positions kept in sessionStorage: a reloaded tab resumes where it was", async () => {
  const session = memoryStorage();
  const b = browser({ shared: false, session });
  const A = b.tab();
  A.subscription("web_a", () => {});
  A.start(OPTS);
  await settle();
  await greet(b);
  b.sockets.last.serverSend(subscribed("web_a", "e1", 9, false));
  await settle();
  A.stop();
  const reloaded = b.tab();
  reloaded.subscription("web_a", () => {});
  reloaded.start(OPTS);
  await settle();
  await greet(b);
  assert.equal(b.sockets.last.sent[0], "subscription2\nweb_a\te1\t9");
});
