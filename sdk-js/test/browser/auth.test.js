// Users against a real Halley: hash and JWT login, private `msg` delivery, and the offline queue.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorld, stopWorld, openPage, until, userJwt } from "./harness.js";
import { connectPage, recorded, waitRecorded } from "./util.js";

let world;
before(async () => {
  world = await startWorld();
});
after(async () => {
  if (world) await stopWorld(world);
});

/** Records the auth callbacks and what isAuthorized() said when each ran. */
function watchAuth(page) {
  return page.evaluate(() => {
    const api = window.CometServer();
    window.auth = [];
    api.onAuthSuccess(() => window.auth.push(["success", api.isAuthorized()]));
    api.onAuthFalill(() => window.auth.push(["fail", api.isAuthorized()]));
  });
}

test("hash login: authorized, and onAuthSuccess sees isAuthorized() already true", { timeout: 60000 }, async () => {
  await world.publish(`INSERT INTO users_auth (id, hash) VALUES (5, 'hash5')`);
  const page = await openPage(world);
  await watchAuth(page);
  await connectPage(page, world, { user_id: 5, user_key: "hash5" });
  await until(page, () => window.auth.length > 0);
  assert.deepEqual(await page.evaluate(() => window.auth), [["success", true]]);
  assert.equal(await page.evaluate(() => window.CometServer().getRealUserKey()), "hash5");
  await page.context().close();
});

test("a wrong key: not authorized, onAuthFalill runs", { timeout: 60000 }, async () => {
  const page = await openPage(world);
  await watchAuth(page);
  await connectPage(page, world, { user_id: 5, user_key: "not-the-hash" });
  await until(page, () => window.auth.length > 0);
  assert.deepEqual(await page.evaluate(() => window.auth), [["fail", false]]);
  await page.context().close();
});

test("JWT login (HS256, key + dev_id, numeric user_id and exp)", { timeout: 60000 }, async () => {
  const page = await openPage(world);
  await watchAuth(page);
  await connectPage(page, world, { user_id: 8, user_key: userJwt(world.tenant, 8) });
  await until(page, () => window.auth.length > 0);
  assert.deepEqual(await page.evaluate(() => window.auth), [["success", true]]);
  await page.context().close();
});

test("private messages: msg and msg.<event> while online", { timeout: 60000 }, async () => {
  await world.publish(`INSERT INTO users_auth (id, hash) VALUES (6, 'hash6')`);
  const page = await openPage(world);
  await page.evaluate(() => {
    window.CometServer().subscription("msg", window.record("msg"));
    window.CometServer().subscription("msg.alert", window.record("alert"));
  });
  await connectPage(page, world, { user_id: 6, user_key: "hash6" });
  await until(page, () => window.CometServer().isAuthorized() === true);
  await world.publish(`INSERT INTO users_messages (id, event, message) VALUES (6, 'alert', '{"text":"it''s for you"}')`);
  await waitRecorded(page, "alert", 1);
  const alert = (await recorded(page, "alert"))[0];
  assert.deepEqual(alert.data, { text: "it's for you" });
  assert.equal(alert.info.pipe, "msg");
  assert.equal((await recorded(page, "msg")).length, 1);
  await page.context().close();
});

test("the offline queue: a private message sent while away arrives on connect", { timeout: 60000 }, async () => {
  await world.publish(`INSERT INTO users_auth (id, hash) VALUES (7, 'hash7')`);
  await world.publish(`INSERT INTO users_messages (id, event, message) VALUES (7, 'later', 'queued text')`);
  const page = await openPage(world);
  await page.evaluate(() => window.CometServer().subscription("msg.later", window.record("later")));
  await connectPage(page, world, { user_id: 7, user_key: "hash7" });
  await waitRecorded(page, "later", 1);
  assert.equal((await recorded(page, "later"))[0].data, "queued text");
  await page.context().close();
});
