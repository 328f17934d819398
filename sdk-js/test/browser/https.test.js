// HTTPS and WSS in a real browser: Halley serves its routes on HALLEY_HTTPS_ADDR with a certificate made for
// this run (openssl, a self-signed leaf for 127.0.0.1 and localhost). Chromium trusts exactly that key for the
// test through --ignore-certificate-errors-spki-list (the SHA-256 of its SubjectPublicKeyInfo), so the page
// is a real secure context rather than one with certificate errors waved through.
//   - A page served over https loads /CometServerApi.js from the server and, given no node and no `wss`
//     option, connects with wss:// to the page's own host and receives a CometQL message.
//   - The dashboard over https: sign-up gives a `Secure` session cookie, the live view connects over wss and
//     shows a message published with mariadb.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { newTenant, startHalley, launchChromium, cometql, until, WAIT_MS } from "./harness.js";
import { waitSubscribers } from "./util.js";

const exec = promisify(execFile);

/** A self-signed P-256 certificate for 127.0.0.1 and localhost: {dir, cert, key, spki}. */
async function makeCertificate() {
  const dir = await mkdtemp(join(tmpdir(), "halley-https-test-"));
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  await exec("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ], { timeout: WAIT_MS });
  const der = new X509Certificate(await readFile(cert)).publicKey.export({ type: "spki", format: "der" });
  const spki = createHash("sha256").update(der).digest("base64");
  return { dir, cert, key, spki };
}

let world;
before(async () => {
  const certs = await makeCertificate();
  const tenant = await newTenant();
  world = { certs, tenant, server: null, browser: null };
  world.server = await startHalley(tenant, {
    env: {
      HALLEY_TLS_CERT_FILE: certs.cert,
      HALLEY_TLS_KEY_FILE: certs.key,
      HALLEY_HTTPS_ADDR: "127.0.0.1:0",
    },
  });
  world.browser = await launchChromium([`--ignore-certificate-errors-spki-list=${certs.spki}`]);
  world.publish = (sql) => cometql(world.server, tenant, sql);
});

after(async () => {
  if (!world) return;
  if (world.browser) await world.browser.close().catch(() => {});
  if (world.server) await world.server.stop();
  await rm(world.tenant.dataDir, { recursive: true, force: true });
  await rm(world.certs.dir, { recursive: true, force: true });
});

async function newPage() {
  const context = await world.browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.sockets = [];
  page.on("websocket", (ws) => page.sockets.push(ws.url()));
  return page;
}

test("a page served over https connects with wss:// to its own host and receives", { timeout: 60000 }, async () => {
  const page = await newPage();
  const origin = `https://${world.server.httpsNode}`;
  const info = await page.goto(origin + "/info");
  assert.equal(info.status(), 200);
  assert.equal(await page.evaluate(() => window.isSecureContext), true, "a trusted https page");
  await page.addScriptTag({ url: "/CometServerApi.js" });
  await page.evaluate((devId) => {
    window.got = [];
    const api = window.CometServer();
    api.subscription("secure", (m) => window.got.push(m.data));
    // No node and no `wss` option: the page's host, and wss because the page is https.
    api.start({ dev_id: devId });
  }, world.tenant.devId);
  await until(page, () => window.CometServer().isConnected() === true);
  assert.ok(page.sockets.length > 0 && page.sockets.every((u) => u.startsWith(`wss://${world.server.httpsNode}/ws/`)), JSON.stringify(page.sockets));
  await waitSubscribers(world, "secure", 1);
  await world.publish("INSERT INTO pipes_messages (name, event, message) VALUES ('secure', 'e', 'over wss')");
  await until(page, () => window.got.length >= 1);
  assert.deepEqual(await page.evaluate(() => window.got), ["over wss"]);
  await page.context().close();
});

test("the dashboard over https: a Secure session cookie and the live view over wss", { timeout: 90000 }, async () => {
  const page = await newPage();
  const origin = `https://${world.server.httpsNode}`;
  await page.goto(origin + "/");
  await page.getByRole("heading", { name: "Create your account" }).waitFor();
  await page.getByLabel("Email").fill("secure@example.com");
  await page.getByLabel("Password").fill("a long enough password");
  const signup = page.waitForResponse((r) => r.url().endsWith("/api/dashboard/v1/signup"));
  await page.getByRole("button", { name: "Create account" }).click();
  const setCookie = await (await signup).headerValue("set-cookie");
  assert.match(setCookie, /^halley_session=[^;]+;.*; Secure$/, setCookie);
  await page.waitForURL(/#\/quickstart$/);
  const cookies = await page.context().cookies(origin);
  const session = cookies.find((c) => c.name === "halley_session");
  assert.ok(session, JSON.stringify(cookies));
  assert.equal(session.secure, true);
  assert.equal(session.httpOnly, true);

  const devId = (await page.locator("#dev-id").textContent()).trim();
  const key = (await page.locator("#secret-key").textContent()).trim();
  await page.locator('#live-status[data-state="open"]').waitFor();
  assert.ok(page.sockets.some((u) => u.startsWith(`wss://${world.server.httpsNode}/ws/`)), JSON.stringify(page.sockets));
  const owner = { devId: Number(devId), key };
  await cometql(world.server, owner, "INSERT INTO pipes_messages (name, event, message) VALUES ('chat', 'msg', 'hi over tls')");
  await page.locator("#live-log li").filter({ hasText: "hi over tls" }).waitFor();
  await page.context().close();
});
