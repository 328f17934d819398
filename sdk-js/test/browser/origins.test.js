// A page whose origin the tenant's "Allowed origins" setting refuses: the server answers its upgrades with
// HTTP 403, which the browser shows the page only as failed sockets. The SDK asks `/info?dev_id=` after a few
// failures and says so with a console.error naming the setting, and stops reconnecting.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorld, stopWorld, openPage, quietPeriod } from "./harness.js";

let world;
before(async () => {
  world = await startWorld();
});
after(async () => {
  if (world) await stopWorld(world);
});

/** A new tenant signed up through the dashboard API, with `origins` saved as its allowed origins. */
async function tenantAllowing(origins) {
  const api = `http://${world.server.node}/api/dashboard/v1`;
  const signup = await fetch(api + "/signup", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: "origins@example.com", password: "a long enough password" }),
  });
  assert.equal(signup.status, 201, await signup.clone().text());
  const { dev_id: devId, csrf_token: csrf } = await signup.json();
  const cookie = signup.headers.get("set-cookie").split(";")[0];
  const saved = await fetch(api + "/origins", {
    method: "PUT",
    headers: { "content-type": "application/json", cookie, "x-halley-csrf": csrf },
    body: JSON.stringify({ origins }),
  });
  assert.equal(saved.status, 200, await saved.text());
  return devId;
}

test("a refused origin gets a console.error naming \"Allowed origins\", and the retries stop", { timeout: 90000 }, async () => {
  const devId = await tenantAllowing(["https://app.example.com"]);
  const page = await openPage(world);
  await page.evaluate((o) => window.CometServer().start(o), { dev_id: devId, node: world.server.node });
  const deadline = Date.now() + 30000;
  while (!page.consoleErrors.some((e) => e.includes('"Allowed origins"')) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const error = page.consoleErrors.find((e) => e.includes('"Allowed origins"'));
  assert.ok(error, "console errors: " + JSON.stringify(page.consoleErrors));
  assert.ok(error.includes(world.web.origin), error);
  assert.ok(error.includes(`dev_id ${devId}`), error);
  const attempts = page.sockets.length;
  await quietPeriod(3000);
  assert.equal(page.sockets.length, attempts, "no more attempts after the refusal");
  assert.equal(await page.evaluate(() => window.CometServer().isConnected()), false);
  await page.context().close();
});
