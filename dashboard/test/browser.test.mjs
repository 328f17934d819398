// The dashboard in a real browser (Debian's headless Chromium, driven by playwright-core): a new developer
// signs up, reads the dev_id and key from the page, publishes with the real `mariadb` client, sees the
// message arrive in the live view, revokes the key and sees the CometQL login fail. Screenshots of each
// page go to target/screenshots/ (ignored), so a test run leaves the work tree clean; `npm run screenshots`
// (HALLEY_REFRESH_SCREENSHOTS=1) writes them to docs/screenshots/ instead, to refresh the README's pictures.
// A second server with sign-up closed: the page offers log-in only.
// Run: HALLEY_BIN=target/debug/halley npm test (from this directory).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "../..");
const BIN = process.env.HALLEY_BIN ? resolve(process.env.HALLEY_BIN) : join(ROOT, "target/debug/halley");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.HALLEY_REFRESH_SCREENSHOTS === "1"
  ? join(ROOT, "docs/screenshots")
  : join(process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(ROOT, "target"), "screenshots");
const WAIT = 15000;
const EMAIL = "dev@example.com";
const PASSWORD = "a long enough password";

let server, dataDir, userDir, context, page, http, cometqlPort;

function startServer(extraEnv = {}, dir = dataDir) {
  return new Promise((res, rej) => {
    const child = spawn(BIN, ["serve"], {
      env: { ...process.env, HALLEY_DATA_DIR: dir, HALLEY_HTTP_ADDR: "127.0.0.1:0", HALLEY_COMETQL_ADDR: "127.0.0.1:0", HALLEY_LOG: "warn", ...extraEnv },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const timer = setTimeout(() => rej(new Error("the server did not start in time")), WAIT);
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/http\+ws (\S+) cometql \S+:(\d+)/);
      if (m) {
        clearTimeout(timer);
        res({ child, http: `http://${m[1]}`, cometqlPort: Number(m[2]) });
      }
    });
    child.on("exit", (code) => rej(new Error(`the server exited (${code}) before listening`)));
  });
}

function stopServer() {
  if (!server || server.exitCode !== null) return Promise.resolve();
  return new Promise((res) => {
    const kill = setTimeout(() => server.kill("SIGKILL"), 12000);
    server.once("exit", () => { clearTimeout(kill); res(); });
    server.kill("SIGTERM");
  });
}

/** The real MariaDB client, as a developer would paste it. Resolves {code, stdout, stderr}. */
function mariadb(user, key, sql) {
  return new Promise((res) => {
    execFile("mariadb", ["--skip-ssl", "-h127.0.0.1", `-P${cometqlPort}`, `-u${user}`, `-p${key}`, "-e", sql],
      { timeout: WAIT }, (err, stdout, stderr) => res({ code: err ? err.code ?? 1 : 0, stdout, stderr }));
  });
}

async function shot(name, viewport = { width: 1280, height: 860 }) {
  await page.setViewportSize(viewport);
  await page.waitForTimeout(150); // let the layout settle after a resize
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** At the current (phone) width: nothing wider than the screen, and no Copy button over a snippet's text. */
async function assertFitsPhone() {
  const problems = await page.evaluate(() => {
    const out = [];
    const width = document.documentElement.clientWidth;
    if (document.documentElement.scrollWidth > width) out.push(`page scrolls sideways (${document.documentElement.scrollWidth} > ${width})`);
    for (const el of document.querySelectorAll(".table-wrap, .snippet pre")) {
      if (el.scrollWidth > el.clientWidth + 1) out.push(`${el.id || el.className} hides ${el.scrollWidth - el.clientWidth}px sideways`);
    }
    for (const el of document.querySelectorAll("td, td button")) {
      const r = el.getBoundingClientRect();
      if (r.width && (r.right > width || r.left < 0)) out.push(`table content off-screen: ${el.textContent.trim().slice(0, 30)}`);
    }
    for (const code of document.querySelectorAll(".snippet .code")) {
      const btn = code.querySelector(".copy").getBoundingClientRect();
      const range = document.createRange();
      range.selectNodeContents(code.querySelector("pre code"));
      for (const r of range.getClientRects()) {
        const overlaps = r.width > 0 && r.left < btn.right && r.right > btn.left && r.top < btn.bottom && r.bottom > btn.top;
        if (overlaps) out.push(`Copy covers text of ${code.querySelector("pre").id}`);
      }
    }
    return out;
  });
  assert.deepEqual(problems, []);
}

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "halley-dash-data-"));
  userDir = mkdtempSync(join(tmpdir(), "halley-dash-chromium-"));
  mkdirSync(SHOTS, { recursive: true });
  ({ child: server, http, cometqlPort } = await startServer());
  context = await chromium.launchPersistentContext(userDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 860 },
  });
  page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(WAIT);
  page.on("dialog", (d) => d.accept());
  page.on("pageerror", (e) => console.error("page error:", e.message));
  // 4xx answers the test provokes are logged by Chromium as failed loads; anything else is worth seeing.
  page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && console.error("console:", m.text()));
});

after(async () => {
  if (context) await context.close();
  await stopServer();
  rmSync(userDir, { recursive: true, force: true });
  rmSync(dataDir, { recursive: true, force: true });
});

test("sign up, publish with mariadb, see it live, revoke the key", async () => {
  await page.goto(http + "/");
  await page.getByRole("heading", { name: "Create your account" }).waitFor();
  await shot("landing");
  await shot("landing-phone", { width: 390, height: 844 });
  await page.setViewportSize({ width: 1280, height: 860 });

  // Clear messages for the mistakes people make.
  await page.getByLabel("Email").fill("not an email");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.getByRole("alert").filter({ hasText: "valid email address" }).waitFor();
  await page.getByLabel("Email").fill(EMAIL);
  await page.getByLabel("Password").fill("short");
  await page.getByRole("button", { name: "Create account" }).click();
  await page.getByRole("alert").filter({ hasText: "at least 10 characters" }).waitFor();
  await shot("signup-error");

  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.waitForURL(/#\/quickstart$/);
  const devId = (await page.locator("#dev-id").textContent()).trim();
  const key = (await page.locator("#secret-key").textContent()).trim();
  assert.match(devId, /^\d+$/);
  assert.match(key, /^[A-Za-z0-9]{64}$/);
  assert.ok((await page.locator("#snippet-php").textContent()).includes(key), "the PHP snippet has the key");
  // The Laravel tab: the .env lines with this tenant's dev_id, app key and key.
  await page.getByRole("tab", { name: "Laravel" }).click();
  const env = await page.locator("#snippet-laravel-env").textContent();
  const appKey = (await page.locator("#app-key").textContent()).trim();
  assert.match(appKey, /^[0-9a-f]{20}$/);
  for (const line of [`REVERB_APP_ID=${devId}`, `REVERB_APP_KEY=${appKey}`, `REVERB_APP_SECRET=${key}`, "BROADCAST_CONNECTION=reverb"]) {
    assert.ok(env.includes(line), `the .env snippet has ${line}: ${env}`);
  }
  assert.ok((await page.locator("#snippet-echo").textContent()).includes('broadcaster: "reverb"'));
  await page.getByRole("tab", { name: "CometQL" }).click();
  await page.locator('#live-status[data-state="open"]').waitFor();

  // The real client, exactly as the page tells the developer to run it.
  const sent = await mariadb(devId, key, "INSERT INTO pipes_messages (name, event, message) VALUES ('chat','msg','hi')");
  assert.equal(sent.code, 0, sent.stderr);
  await page.locator("#live-log li").filter({ hasText: "hi" }).waitFor();

  await page.getByRole("button", { name: "Send test message" }).click();
  await page.locator("#send-result").filter({ hasText: "Delivered to 1 connection" }).waitFor();
  await page.locator("#live-log li").filter({ hasText: "Hello, Halley!" }).waitFor();
  await shot("quickstart");
  await shot("quickstart-phone", { width: 390, height: 844 });
  await assertFitsPhone();
  await page.setViewportSize({ width: 1280, height: 860 });

  await page.getByRole("link", { name: "Overview" }).click();
  await page.locator("#stat-messages_today").filter({ hasText: "2" }).waitFor();
  // Stored data against the quotas: a `trust_` pipe keeps its messages, so 5 bytes in one history entry.
  const kept = await mariadb(devId, key, "INSERT INTO pipes_messages (name, event, message) VALUES ('trust_demo','msg','hello')");
  assert.equal(kept.code, 0, kept.stderr);
  await page.locator("#stat-storage-history_bytes").filter({ hasText: /^5\sB \/ 100\sMiB$/ }).waitFor();
  await page.locator("#stat-storage-history_rows").filter({ hasText: /^1 \/ / }).waitFor();
  await shot("overview");

  await page.getByRole("link", { name: "Settings" }).click();
  await page.getByLabel("One origin per line").fill("https://app.example.com");
  await page.getByRole("button", { name: "Save origins" }).click();
  await page.getByRole("status").filter({ hasText: "Only these origins may connect" }).waitFor();
  // The dashboard's own live view is not one of them, and still connects (its origin is the server's).
  await page.getByRole("link", { name: "Quick start" }).click();
  await page.locator('#live-status[data-state="open"]').waitFor();
  await page.getByRole("link", { name: "Settings" }).click();
  await page.getByLabel("One origin per line").fill("");
  await page.getByRole("button", { name: "Save origins" }).click();
  await page.getByRole("status").filter({ hasText: "Any origin may connect" }).waitFor();
  // Require TLS: this server has no certificate, so the page warns; a plaintext login with the right key is
  // then refused with ERROR 3159 until the box is cleared again.
  await page.getByText("This server has no TLS certificate").waitFor();
  await page.getByLabel("Refuse CometQL logins without TLS").check();
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await page.getByRole("status").filter({ hasText: "CometQL logins must use TLS" }).waitFor();
  const plaintext = await mariadb(devId, key, "SHOW TABLES");
  assert.notEqual(plaintext.code, 0);
  assert.match(plaintext.stderr, /ERROR 3159/);
  await page.getByLabel("Refuse CometQL logins without TLS").uncheck();
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await page.getByRole("status").filter({ hasText: "Plaintext CometQL logins are allowed" }).waitFor();
  assert.equal((await mariadb(devId, key, "SHOW TABLES")).code, 0);
  // Pusher client events: off for a new tenant, turned on here.
  assert.equal(await page.getByLabel("Allow client events").isChecked(), false);
  await page.getByLabel("Allow client events").check();
  await page.getByRole("button", { name: "Save client events" }).click();
  await page.getByRole("status").filter({ hasText: "Client events are relayed" }).waitFor();
  await shot("settings");

  await page.getByRole("link", { name: "Keys" }).click();
  const row = page.locator("tbody tr").filter({ hasText: "default" });
  await row.getByRole("button", { name: "Reveal" }).click();
  await row.filter({ hasText: key }).waitFor();
  await shot("keys");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(150);
  await assertFitsPhone();
  await page.setViewportSize({ width: 1280, height: 860 });
  // The only key: the page asks twice (the server answers 409 until confirm_last), then it is gone.
  await row.getByRole("button", { name: "Revoke" }).click();
  await page.getByText("No active key").waitFor();
  const refused = await mariadb(devId, key, "SELECT 1");
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /Authentication failure/);

  // Logged out, a wrong password and a taken email get clear messages.
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByRole("heading", { name: "Log in to Halley" }).waitFor();
  await page.getByLabel("Email").fill(EMAIL);
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("alert").filter({ hasText: "Wrong email or password." }).waitFor();
  await shot("login-error");
  await page.getByRole("link", { name: "Sign up" }).click();
  await page.getByLabel("Email").fill(EMAIL);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.getByRole("alert").filter({ hasText: "already exists" }).waitFor();

  // A session that ends under the page (cookie gone, expired) sends the owner to the log-in form.
  await page.getByRole("link", { name: "Log in" }).click();
  await page.getByLabel("Email").fill(EMAIL);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(/#\/overview$/);
  // Wait for the overview's first usage answer, so that the next API call is the one made after the cookie
  // is gone (the overview polls again only 5 s later).
  await page.locator("#stat-messages_today").filter({ hasText: /\d/ }).waitFor();
  await context.clearCookies();
  await page.getByRole("link", { name: "Keys" }).click();
  await page.locator("#banner").filter({ hasText: "log in again" }).waitFor();
  await page.getByRole("heading", { name: "Log in to Halley" }).waitFor();

  // The server goes away: the form says so instead of failing silently.
  await stopServer();
  await page.getByLabel("Email").fill(EMAIL);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("alert").filter({ hasText: "Cannot reach the server" }).waitFor();
  await shot("server-unreachable");
});

test("with sign-up closed, the page says why and offers log-in only", async () => {
  const dir = mkdtempSync(join(tmpdir(), "halley-dash-closed-"));
  const closed = await startServer({ HALLEY_DASHBOARD_SIGNUP: "closed" }, dir);
  try {
    await page.setViewportSize({ width: 1280, height: 860 });
    await page.goto(closed.http + "/#/signup");
    await page.getByRole("heading", { name: "Sign-up is closed" }).waitFor();
    await page.getByRole("status").filter({ hasText: "halley tenant create" }).waitFor();
    assert.equal(await page.getByRole("button", { name: "Create account" }).count(), 0, "no sign-up form");
    assert.equal(await page.getByRole("link", { name: "Sign up" }).count(), 0, "no sign-up tab");
    await page.locator("#signup-closed").getByRole("link", { name: "Log in" }).click();
    await page.getByRole("heading", { name: "Log in to Halley" }).waitFor();
    assert.equal(await page.getByRole("link", { name: "Sign up" }).count(), 0, "no sign-up tab on log-in");
  } finally {
    await new Promise((res) => {
      const kill = setTimeout(() => closed.child.kill("SIGKILL"), 12000);
      closed.child.once("exit", () => { clearTimeout(kill); res(); });
      closed.child.kill("SIGTERM");
    });
    rmSync(dir, { recursive: true, force: true });
  }
});
