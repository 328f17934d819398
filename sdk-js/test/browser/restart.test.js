// The server restarts (same port): the page reconnects by itself and its subscriptions are restored.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorld, stopWorld, startHalley, openPage, until } from "./harness.js";
import { connectPage, waitSubscribers, recorded, waitRecorded } from "./util.js";

let world;
before(async () => {
  world = await startWorld();
});
after(async () => {
  if (world) await stopWorld(world);
});

test("reconnect after a server restart, with the subscriptions restored", { timeout: 90000 }, async () => {
  const page = await openPage(world);
  await page.evaluate(() => {
    window.statuses = [];
    window.CometServer().subscription("news", window.record("news"));
  });
  await connectPage(page, world);
  await waitSubscribers(world, "news", 1);
  await world.publish(`INSERT INTO pipes_messages (name, event, message) VALUES ('news', 'e', 'before')`);
  await waitRecorded(page, "news", 1);

  const { httpPort, cometqlPort } = world.server;
  await world.server.stop();
  await until(page, () => window.CometServer().isConnected() === false);
  world.server = await startHalley(world.tenant, { httpPort, cometqlPort });
  await until(page, () => window.CometServer().isConnected() === true, undefined, 30000);
  await waitSubscribers(world, "news", 1);
  await world.publish(`INSERT INTO pipes_messages (name, event, message) VALUES ('news', 'e', 'after')`);
  await waitRecorded(page, "news", 2);
  assert.deepEqual((await recorded(page, "news")).map((g) => g.data), ["before", "after"]);
  // One socket before the restart, then a few backed-off attempts while the server was down: no storm.
  assert.ok(page.sockets.length >= 2 && page.sockets.length <= 6, `${page.sockets.length} sockets opened`);
  await page.context().close();
});
