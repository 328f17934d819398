// Tabs of one browser against a real Halley: one shared socket, every message once per tab, hand-over
// when the leader tab closes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorld, stopWorld, openPage, until, quietPeriod } from "./harness.js";
import { connectPage, waitSubscribers, subscribers, recorded, waitRecorded } from "./util.js";

let world;
before(async () => {
  world = await startWorld();
});
after(async () => {
  if (world) await stopWorld(world);
});

/** `count` tabs of one browser context, each subscribed to `pipe` and connected. */
async function tabs(count, pipe) {
  const context = await world.browser.newContext();
  const pages = [];
  for (let i = 0; i < count; i++) {
    const page = await openPage(world, { context });
    await page.evaluate((p) => window.CometServer().subscription(p, window.record(p)), pipe);
    await connectPage(page, world);
    pages.push(page);
  }
  return { context, pages };
}

const openSockets = (pages) => pages.flatMap((p) => p.sockets).filter((ws) => !ws.isClosed()).length;

test("two tabs share one socket and both get every message exactly once", { timeout: 60000 }, async () => {
  const { context, pages } = await tabs(2, "shared");
  const roles = await Promise.all(pages.map((p) => p.evaluate(() => window.CometServer().isMaster())));
  assert.deepEqual(roles, [true, false]);
  assert.equal(openSockets(pages), 1, "one WebSocket for the two tabs");
  await waitSubscribers(world, "shared", 1);
  assert.equal(await subscribers(world, "shared"), 1, "the server sees one connection");
  for (let i = 0; i < 5; i++) {
    await world.publish(`INSERT INTO pipes_messages (name, event, message) VALUES ('shared', 'n', '${i}')`);
  }
  for (const p of pages) await waitRecorded(p, "shared", 5);
  await quietPeriod();
  for (const p of pages) assert.deepEqual((await recorded(p, "shared")).map((g) => g.data), [0, 1, 2, 3, 4]);
  await context.close();
});

test("a follower's subscription goes through the leader's socket", { timeout: 60000 }, async () => {
  const { context, pages } = await tabs(2, "first_pipe");
  await pages[1].evaluate(() => window.CometServer().subscription("second_pipe", window.record("second_pipe")));
  await waitSubscribers(world, "second_pipe", 1);
  await world.publish(`INSERT INTO pipes_messages (name, event, message) VALUES ('second_pipe', 'e', 'x')`);
  await waitRecorded(pages[1], "second_pipe", 1);
  await quietPeriod();
  assert.equal((await recorded(pages[0], "second_pipe")).length, 0);
  await context.close();
});

test("the leader tab closes: the other tab takes over the socket and keeps receiving", { timeout: 60000 }, async () => {
  const { context, pages } = await tabs(2, "handover");
  const [leader, follower] = pages;
  assert.equal(await leader.evaluate(() => window.CometServer().isMaster()), true);
  await waitSubscribers(world, "handover", 1);
  await leader.close();
  await until(follower, () => window.CometServer().isMaster() === true);
  await until(follower, () => window.CometServer().isConnected() === true);
  await waitSubscribers(world, "handover", 1);
  await world.publish(`INSERT INTO pipes_messages (name, event, message) VALUES ('handover', 'e', 'after')`);
  await waitRecorded(follower, "handover", 1);
  assert.deepEqual((await recorded(follower, "handover")).map((g) => g.data), ["after"]);
  assert.equal(await subscribers(world, "handover"), 1);
  await context.close();
});

test("a follower tab's web_pipe_send and count request: sibling gets the message, asker the answers", { timeout: 60000 }, async () => {
  const { context, pages } = await tabs(2, "web_tabs");
  const [leader, follower] = pages;
  const outsider = await openPage(world);
  await outsider.evaluate(() => window.CometServer().subscription("web_tabs", window.record("web_tabs")));
  await connectPage(outsider, world);
  await waitSubscribers(world, "web_tabs", 2);
  await follower.evaluate(() => {
    window.CometServer().subscription("#web_tabs", window.record("report"));
    window.CometServer().subscription("", window.record("all"));
    window.CometServer().web_pipe_send("web_tabs", "say", { from: "follower" });
    window.CometServer().count_users_in_pipe("web_tabs", window.record("count"));
  });
  await leader.evaluate(() => window.CometServer().subscription("", window.record("all")));
  await waitRecorded(follower, "report", 1);
  await waitRecorded(follower, "count", 1);
  await waitRecorded(leader, "web_tabs", 1);
  await waitRecorded(outsider, "web_tabs", 1);
  await quietPeriod();
  assert.deepEqual((await recorded(leader, "web_tabs")).map((g) => g.data), [{ from: "follower" }]);
  assert.deepEqual((await recorded(outsider, "web_tabs")).map((g) => g.data), [{ from: "follower" }]);
  assert.equal((await recorded(follower, "web_tabs")).length, 0, "no echo to the sending tab");
  const count = (await recorded(follower, "count"))[0].data;
  assert.equal(Array.isArray(count) ? count[1] : count.user_in_pipe, 2, "two connections: the shared one and the outsider");
  const leaderSaw = (await recorded(leader, "all")).map((g) => g.info.pipe);
  assert.ok(!leaderSaw.includes("_answer_pipe_count") && !leaderSaw.includes("_answer_to_web_tabs"), leaderSaw.join());
  await outsider.context().close();
  await context.close();
});
