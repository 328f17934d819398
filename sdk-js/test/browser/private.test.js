// Private messages with ids in Chromium (issue 14): two tabs of one browser context (one shared socket) and a
// second browser context (another device) of the same user go offline (CDP network emulation, their sockets
// cut) while 50 private messages are sent; back online, every page's callbacks see all of them exactly once
// and in order: the first device to reconnect drains the queue, the other resumes from the server's window
// after the last id it processed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorld, stopWorld, openPage, until, quietPeriod } from "./harness.js";
import { connectPage, recorded, waitRecorded } from "./util.js";

let world;
before(async () => {
  world = await startWorld();
});
after(async () => {
  if (world) await stopWorld(world);
});

const USER = 90;
const KEY = "h90";

const sendPrivate = (text) =>
  world.publish(`INSERT INTO users_messages (id, event, message) VALUES (${USER}, 'e', '${text}')`);

async function emulate(page, cdp, offline) {
  await cdp.send("Network.emulateNetworkConditions", {
    offline,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: -1,
  });
}

/** A page of `context` listening to its private messages and to onRecovery("msg"), connected as USER. */
async function userPage(context) {
  const page = await openPage(world, { context });
  page.cdp = await context.newCDPSession(page);
  await page.cdp.send("Network.enable");
  await page.evaluate(() => {
    window.recoveries = [];
    window.CometServer().subscription("msg", window.record("pm"));
    window.CometServer().onRecovery("msg", (recovered, position) => window.recoveries.push({ recovered, position }));
  });
  await connectPage(page, world, { user_id: USER, user_key: KEY });
  return page;
}

/** Every page of a device offline; the device's socket (its leader tab's) cut. */
async function deviceOffline(pages) {
  for (const p of pages) await emulate(p, p.cdp, true);
  for (const p of pages) {
    await p.evaluate(() => {
      const c = window.CometServer().client;
      const ws = c.group && c.group.connection && c.group.connection.ws;
      if (ws) ws.close();
    });
  }
  for (const p of pages) await until(p, () => window.CometServer().isConnected() === false);
}

async function deviceOnline(pages) {
  for (const p of pages) await emulate(p, p.cdp, false);
  for (const p of pages) await until(p, () => window.CometServer().isConnected() === true, undefined, 30000);
}

test("two tabs and a second device: 50 private messages sent while offline reach every page exactly once", { timeout: 180000 }, async () => {
  await world.publish(`INSERT INTO users_auth (id, hash) VALUES (${USER}, '${KEY}')`);
  const laptop = await world.browser.newContext();
  const tabs = [await userPage(laptop), await userPage(laptop)];
  const phone = await world.browser.newContext();
  const pages = [...tabs, await userPage(phone)];
  assert.deepEqual(
    await Promise.all(tabs.map((p) => p.evaluate(() => window.CometServer().isMaster()))),
    [true, false],
    "the two tabs share one socket",
  );

  await sendPrivate("m0");
  for (const p of pages) await waitRecorded(p, "pm", 1);

  await deviceOffline(tabs);
  await deviceOffline(pages.slice(2));
  for (let i = 1; i <= 50; i++) await sendPrivate(`q${i}`);
  await Promise.all([deviceOnline(tabs), deviceOnline(pages.slice(2))]);
  for (const p of pages) await waitRecorded(p, "pm", 51);
  await sendPrivate("l1");
  for (const p of pages) await waitRecorded(p, "pm", 52);
  await quietPeriod();

  const want = ["m0", ...Array.from({ length: 50 }, (_, i) => `q${i + 1}`), "l1"];
  for (const [i, p] of pages.entries()) {
    assert.deepEqual((await recorded(p, "pm")).map((g) => g.data), want, `page ${i}`);
    assert.deepEqual(await p.evaluate(() => window.recoveries), [], `page ${i}: nothing was lost`);
    assert.deepEqual(p.consoleErrors, [], `page ${i}`);
  }
  await laptop.close();
  await phone.close();
});
