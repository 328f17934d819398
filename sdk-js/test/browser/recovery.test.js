// Positions and recovery in Chromium (issue 14): the page goes offline (CDP network emulation, its socket cut)
// while messages are published; after reconnect every one arrives in order and onRecovery(true) fires once.
// Offline past the server's window (100 messages): onRecovery(false) once and nothing of the hole replayed.
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

const PIPE = "rec_pipe";

async function publish(from, to) {
  for (let i = from; i <= to; i++) {
    await world.publish(`INSERT INTO pipes_messages (name, event, message) VALUES ('${PIPE}', 'e', 'm${i}')`);
  }
}

/** Network emulation offline, and the page's socket cut (emulation alone may leave an open socket up). */
async function goOffline(page, cdp) {
  await cdp.send("Network.emulateNetworkConditions", {
    offline: true,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: -1,
  });
  await page.evaluate(() => {
    const ws = window.CometServer().client.group.connection.ws;
    if (ws) ws.close();
  });
  await until(page, () => window.CometServer().isConnected() === false);
}

async function goOnline(page, cdp) {
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: -1,
  });
  await until(page, () => window.CometServer().isConnected() === true, undefined, 30000);
}

test("offline while 100 messages are published: all arrive in order, onRecovery(true) once; past the window: false once, no partial replay", { timeout: 180000 }, async () => {
  const page = await openPage(world);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  await page.evaluate((pipe) => {
    window.recoveries = [];
    window.CometServer().subscription(pipe, window.record("rec"));
    window.CometServer().onRecovery(pipe, (recovered, position) => window.recoveries.push({ recovered, position }));
  }, PIPE);
  await connectPage(page, world);
  await until(page, () => window.recoveries.length === 1);
  await waitSubscribers(world, PIPE, 1);
  await publish(0, 0);
  await waitRecorded(page, "rec", 1);

  // 1. Within the window: everything, in order, once.
  await goOffline(page, cdp);
  await publish(1, 100);
  await goOnline(page, cdp);
  await waitRecorded(page, "rec", 101);
  await until(page, () => window.recoveries.length === 2);
  await quietPeriod();
  const first = (await recorded(page, "rec")).map((g) => g.data);
  assert.deepEqual(first, Array.from({ length: 101 }, (_, i) => `m${i}`));
  let recoveries = await page.evaluate(() => window.recoveries);
  assert.deepEqual(
    recoveries.map((r) => r.recovered),
    [false, true],
  );
  assert.equal(recoveries[1].position.offset, 101);
  assert.deepEqual(await page.evaluate((p) => window.CometServer().getPosition(p), PIPE), recoveries[1].position);

  // 2. Past the window (150 missed > 100 kept): told once, nothing of the hole replayed, live goes on.
  await goOffline(page, cdp);
  await publish(101, 250);
  await goOnline(page, cdp);
  await until(page, () => window.recoveries.length === 3);
  await waitSubscribers(world, PIPE, 1);
  await publish(251, 251);
  await waitRecorded(page, "rec", 102);
  await quietPeriod();
  const second = (await recorded(page, "rec")).map((g) => g.data);
  assert.deepEqual(second, [...first, "m251"], "no partial replay of the hole");
  recoveries = await page.evaluate(() => window.recoveries);
  assert.deepEqual(
    recoveries.map((r) => r.recovered),
    [false, true, false],
  );
  assert.equal(recoveries[2].position.offset, 251);
  assert.deepEqual(page.consoleErrors, []);
  await page.context().close();
});
