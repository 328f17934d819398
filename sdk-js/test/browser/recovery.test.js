// Positions and recovery in Chromium (issue 14): the page goes offline (CDP network emulation, its socket cut)
// while messages are published; after reconnect every one arrives in order and onRecovery(true) fires once.
// Offline past the server's window (100 messages): onRecovery(false) once and nothing of the hole replayed.
// A server restart (windows in memory: a new epoch) reports false once, and the new epoch's offsets 1, 2...
// are delivered although the page had processed higher offsets of the old one. A pipe that keeps history
// (pipes_settings) numbers its messages in the database: across a restart it keeps its epoch and what the page
// missed is replayed from the history (onRecovery(true)), while a pipe without history reports false.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorld, stopWorld, startHalley, openPage, until, quietPeriod } from "./harness.js";
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

test("a server restart: onRecovery(false) once with a new epoch, and its small offsets are delivered", { timeout: 120000 }, async () => {
  const pipe = "rec_restart";
  const page = await openPage(world);
  await page.evaluate((p) => {
    window.recoveries = [];
    window.CometServer().subscription(p, window.record("r"));
    window.CometServer().onRecovery(p, (recovered, position) => window.recoveries.push({ recovered, position }));
  }, pipe);
  await connectPage(page, world);
  await until(page, () => window.recoveries.length === 1);
  await waitSubscribers(world, pipe, 1);
  for (const m of ["a", "b", "c"]) {
    await world.publish(`INSERT INTO pipes_messages (name, event, message) VALUES ('${pipe}', 'e', '${m}')`);
  }
  await waitRecorded(page, "r", 3);

  const { httpPort, cometqlPort } = world.server;
  await world.server.stop();
  await until(page, () => window.CometServer().isConnected() === false);
  world.server = await startHalley(world.tenant, { httpPort, cometqlPort });
  await until(page, () => window.CometServer().isConnected() === true, undefined, 30000);
  await until(page, () => window.recoveries.length === 2);
  await waitSubscribers(world, pipe, 1);
  await world.publish(`INSERT INTO pipes_messages (name, event, message) VALUES ('${pipe}', 'e', 'd')`);
  await waitRecorded(page, "r", 4);
  await quietPeriod();
  assert.deepEqual((await recorded(page, "r")).map((g) => g.data), ["a", "b", "c", "d"]);
  const recoveries = await page.evaluate(() => window.recoveries);
  assert.deepEqual(recoveries.map((r) => r.recovered), [false, false]);
  assert.notEqual(recoveries[1].position.epoch, recoveries[0].position.epoch);
  assert.deepEqual(await page.evaluate((p) => window.CometServer().getPosition(p), pipe), {
    epoch: recoveries[1].position.epoch,
    offset: 1,
  });
  await page.context().close();
});

test("across a server restart: durable-history pipes recover, others report false", { timeout: 180000 }, async () => {
  const kept = "rec_kept";
  const plain = "rec_plain";
  await world.publish(`INSERT INTO pipes_settings (name, length) VALUES ('${kept}', 100)`);
  const page = await openPage(world);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  await page.evaluate(([k, p]) => {
    window.recoveries = { [k]: [], [p]: [] };
    for (const pipe of [k, p]) {
      window.CometServer().subscription(pipe, window.record(pipe));
      window.CometServer().onRecovery(pipe, (recovered, position) => window.recoveries[pipe].push({ recovered, position }));
    }
  }, [kept, plain]);
  await connectPage(page, world);
  await until(page, ([k, p]) => window.recoveries[k].length === 1 && window.recoveries[p].length === 1, [kept, plain]);
  await waitSubscribers(world, kept, 1);
  const send = async (pipe, text) =>
    world.publish(`INSERT INTO pipes_messages (name, event, message) VALUES ('${pipe}', 'e', '${text}')`);
  for (const m of ["a", "b"]) {
    await send(kept, m);
    await send(plain, m);
  }
  await waitRecorded(page, kept, 2);
  await waitRecorded(page, plain, 2);

  // Offline, the server restarts, messages are published to the new server, then back online.
  await goOffline(page, cdp);
  const { httpPort, cometqlPort } = world.server;
  await world.server.stop();
  world.server = await startHalley(world.tenant, { httpPort, cometqlPort });
  for (const m of ["c", "d"]) {
    await send(kept, m);
    await send(plain, m);
  }
  await goOnline(page, cdp);
  await until(page, ([k, p]) => window.recoveries[k].length === 2 && window.recoveries[p].length === 2, [kept, plain]);
  await waitSubscribers(world, kept, 1);
  await send(kept, "e");
  await send(plain, "e");
  await waitRecorded(page, kept, 5);
  await waitRecorded(page, plain, 3);
  await quietPeriod();
  assert.deepEqual((await recorded(page, kept)).map((g) => g.data), ["a", "b", "c", "d", "e"]);
  assert.deepEqual((await recorded(page, plain)).map((g) => g.data), ["a", "b", "e"], "no partial replay");
  const recoveries = await page.evaluate(() => window.recoveries);
  assert.deepEqual(recoveries[kept].map((r) => r.recovered), [false, true]);
  assert.equal(recoveries[kept][1].position.epoch, recoveries[kept][0].position.epoch, "the same epoch");
  assert.equal(recoveries[kept][1].position.offset, 4);
  assert.deepEqual(recoveries[plain].map((r) => r.recovered), [false, false]);
  assert.notEqual(recoveries[plain][1].position.epoch, recoveries[plain][0].position.epoch);
  assert.deepEqual(page.consoleErrors, []);
  await page.context().close();
});
