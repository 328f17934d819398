// Pipes against a real Halley: CometQL publish -> page, web_pipe_send between pages, track_ presence,
// get_pipe_log, count_users_in_pipe, and the ES module build.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorld, stopWorld, openPage, until, quietPeriod } from "./harness.js";
import { connectPage, waitSubscribers, recorded, waitRecorded } from "./util.js";

let world;
before(async () => {
  world = await startWorld();
});
after(async () => {
  if (world) await stopWorld(world);
});

test("subscribe, then receive a CometQL message; apostrophes and backslashes arrive intact", { timeout: 60000 }, async () => {
  const page = await openPage(world);
  await page.evaluate(() => {
    const api = window.CometServer();
    api.subscription("chat", window.record("chat"));
    api.subscription("chat.msg", window.record("chat.msg"));
    api.subscription("chat.other", window.record("chat.other"));
  });
  await connectPage(page, world);
  await waitSubscribers(world, "chat", 1);
  await world.publish(`INSERT INTO pipes_messages (name, event, message) VALUES ('chat', 'msg', 'hi')`);
  // mysqli_real_escape_string style (doubled quote) and a JSON text with an escaped backslash.
  await world.publish(`INSERT INTO pipes_messages (name, event, message) VALUES ('chat', 'msg', '{"text":"it''s \\\\ ok"}')`);
  await waitRecorded(page, "chat.msg", 2);
  const got = await recorded(page, "chat.msg");
  assert.equal(got[0].data, "hi");
  assert.deepEqual(got[0].info, { user_id: 0, pipe: "chat", event: "msg", history: false, marker: undefined, uuid: undefined });
  assert.deepEqual(got[1].data, { text: "it's \\ ok" });
  assert.equal((await recorded(page, "chat")).length, 2);
  assert.equal((await recorded(page, "chat.other")).length, 0);
  assert.deepEqual(page.consoleErrors, []);
  await page.context().close();
});

test("web_pipe_send between two pages (two browsers), with the delivery report", { timeout: 60000 }, async () => {
  const alice = await openPage(world);
  const bob = await openPage(world);
  for (const p of [alice, bob]) {
    await p.evaluate(() => {
      window.CometServer().subscription("web_chat", window.record("web_chat"));
      window.CometServer().subscription("#web_chat", window.record("report"));
    });
    await connectPage(p, world);
  }
  await waitSubscribers(world, "web_chat", 2);
  await alice.evaluate(() => window.CometServer().web_pipe_send("web_chat", "say", { text: "it's \"me\" \\o/" }));
  await bob.evaluate(() => window.CometServer().web_pipe_send("web_chat.say", "two-arg form"));
  await waitRecorded(bob, "web_chat", 1);
  await waitRecorded(alice, "web_chat", 1);
  await waitRecorded(alice, "report", 1);
  const atBob = await recorded(bob, "web_chat");
  assert.deepEqual(atBob[0].data, { text: "it's \"me\" \\o/" });
  assert.equal(atBob[0].info.event, "say");
  const atAlice = await recorded(alice, "web_chat");
  assert.equal(atAlice[0].data, "two-arg form");
  const report = await recorded(alice, "report");
  assert.equal(report[0].data.number_messages, 1);
  await quietPeriod();
  assert.equal((await recorded(alice, "web_chat")).length, 1, "the sender does not get its own message back");
  await alice.context().close();
  await bob.context().close();
});

test("track_ presence: subscription events and getTrackPipeUsers", { timeout: 60000 }, async () => {
  const watcher = await openPage(world);
  await watcher.evaluate(() => window.CometServer().subscription("track_room.subscription", window.record("joined")));
  await connectPage(watcher, world);
  await waitSubscribers(world, "track_room", 1);
  const guest = await openPage(world);
  await guest.evaluate(() => window.CometServer().subscription("track_room", () => {}));
  await connectPage(guest, world);
  await waitRecorded(watcher, "joined", 1);
  const guestUuid = await guest.evaluate(() => window.CometServer().getUUID());
  const joined = await recorded(watcher, "joined");
  assert.equal(joined[0].data.uuid, guestUuid);
  assert.equal(joined[0].data.user_id, 0);

  await watcher.evaluate(() => window.CometServer().getTrackPipeUsers("track_room", window.record("users")));
  await waitRecorded(watcher, "users", 1);
  const users = (await recorded(watcher, "users"))[0].data;
  assert.deepEqual(users.map((u) => u.uuid).sort(), [guestUuid, await watcher.evaluate(() => window.CometServer().getUUID())].sort());
  await watcher.context().close();
  await guest.context().close();
});

test("get_pipe_log replays the pipe's history to the callback", { timeout: 60000 }, async () => {
  await world.publish(`INSERT INTO pipes_settings (name, length) VALUES ('hist', 10)`);
  await world.publish(`INSERT INTO pipes_messages (name, event, message) VALUES ('hist', 'e', 'first')`);
  await world.publish(`INSERT INTO pipes_messages (name, event, message) VALUES ('hist', 'e', '{"n":2}')`);
  const page = await openPage(world);
  await connectPage(page, world);
  await page.evaluate(() => window.CometServer().get_pipe_log("hist", window.record("log")));
  await waitRecorded(page, "log", 2);
  const log = await recorded(page, "log");
  assert.deepEqual(log.map((l) => l.data), ["first", { n: 2 }]);
  assert.equal(log[0].info.history, true);
  await page.context().close();
});

test("count_users_in_pipe counts the connections of a web_ pipe", { timeout: 60000 }, async () => {
  const pages = [await openPage(world), await openPage(world)];
  for (const p of pages) {
    await p.evaluate(() => window.CometServer().subscription("web_count", () => {}));
    await connectPage(p, world);
  }
  await waitSubscribers(world, "web_count", 2);
  await pages[0].evaluate(() => window.CometServer().count_users_in_pipe("web_count", window.record("count")));
  await waitRecorded(pages[0], "count", 1);
  const answer = (await recorded(pages[0], "count"))[0].data;
  const n = Array.isArray(answer) ? answer[1] : answer.user_in_pipe;
  assert.equal(n, 2);
  for (const p of pages) await p.context().close();
});

test("the ES module: new Halley(...).on() receives", { timeout: 60000 }, async () => {
  const page = await moduleClient();
  await world.publish(`INSERT INTO pipes_messages (name, event, message) VALUES ('web_mod', 'e', '{"m":1}')`);
  await waitRecorded(page, "mod", 1);
  assert.deepEqual((await recorded(page, "mod"))[0].data, { m: 1 });
  await page.context().close();
});

test("the ES module: publish() resolves with the delivery report", { timeout: 60000 }, async () => {
  const page = await moduleClient();
  const report = await page.evaluate(() => window.comet.publish("web_mod", "e", { x: 1 }));
  assert.equal(report.number_messages, 0);
  await page.context().close();
});

/** A page that imports dist/halley.mjs and listens to web_mod with the modern API. */
async function moduleClient() {
  const page = await openPage(world, { module: true });
  await page.evaluate(
    ({ devId, node }) => {
      window.comet = new window.H.Halley({ devId, node });
      window.comet.on("web_mod", (m) => window.got.push({ tag: "mod", data: m.data, info: m.server_info }));
    },
    { devId: world.tenant.devId, node: world.server.node },
  );
  await until(page, () => window.comet.connected === true);
  await waitSubscribers(world, "web_mod", 1);
  return page;
}
