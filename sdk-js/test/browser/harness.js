// What the browser tests drive: a real Halley server (HALLEY_BIN) on fresh ports with a fresh data dir, the
// mariadb CLI to publish with CometQL as a backend would, a tiny static server for the test pages and dist/,
// and Debian's Chromium through playwright-core. Every wait has a timeout and every process started here is
// stopped by the returned handles.

import { spawn, execFile } from "node:child_process";
import { createServer } from "node:http";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { createHmac } from "node:crypto";
import { chromium } from "playwright-core";

const SDK_ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const WAIT_MS = 10000;

export const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export function halleyBin() {
  const bin = process.env.HALLEY_BIN;
  if (!bin) {
    throw new Error(
      "HALLEY_BIN is not set: build the server (cargo build -p halley-server) and run " +
        "HALLEY_BIN=<target>/debug/halley npm run test:browser",
    );
  }
  return bin;
}

function run(cmd, args, env, timeout = WAIT_MS) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env: { ...process.env, ...env }, timeout, encoding: "utf8" }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(" ")} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** A data dir with one tenant: {dataDir, devId, key}. */
export async function newTenant() {
  const dataDir = await mkdtemp(join(tmpdir(), "halley-sdk-test-"));
  const out = await run(halleyBin(), ["tenant", "create", "--email", "t@example.com"], { HALLEY_DATA_DIR: dataDir });
  const devId = /^dev_id=(\d+)$/m.exec(out)?.[1];
  const key = /^key=(\S+)$/m.exec(out)?.[1];
  if (!devId || !key) throw new Error("unexpected `tenant create` output: " + out);
  return { dataDir, devId: Number(devId), key };
}

/**
 * Starts `halley serve` on the tenant's data dir. `httpPort` 0 picks a free port; pass the previous port to
 * restart on the same address. `env` adds settings (HALLEY_HTTPS_ADDR and the certificate for HTTPS). Resolves
 * once the server prints its listening line (and, with HTTPS, its https+wss line).
 */
export function startHalley(tenant, { httpPort = 0, cometqlPort = 0, env: extra = {} } = {}) {
  const env = {
    ...process.env,
    HALLEY_DATA_DIR: tenant.dataDir,
    HALLEY_HTTP_ADDR: `127.0.0.1:${httpPort}`,
    HALLEY_COMETQL_ADDR: `127.0.0.1:${cometqlPort}`,
    ...extra,
  };
  const https = Boolean(env.HALLEY_HTTPS_ADDR);
  const proc = spawn(halleyBin(), ["serve"], { env, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  proc.stderr.on("data", (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  return new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error("halley did not start within 20 s:\n" + stderr));
    }, 20000);
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`halley exited with ${code} before listening:\n${stderr}`));
    });
    proc.stdout.on("data", (d) => {
      buf += d;
      const m = /halley listening: http\+ws 127\.0\.0\.1:(\d+) cometql 127\.0\.0\.1:(\d+)/.exec(buf);
      const s = /https\+wss: https:\/\/127\.0\.0\.1:(\d+)\//.exec(buf);
      if (!m || (https && !s)) return;
      clearTimeout(timer);
      proc.removeAllListeners("exit");
      resolve({
        proc,
        httpPort: Number(m[1]),
        cometqlPort: Number(m[2]),
        node: `127.0.0.1:${m[1]}`,
        httpsNode: s ? `127.0.0.1:${s[1]}` : null,
        stderr: () => stderr,
        stop: () => stopProcess(proc),
      });
    });
  });
}

/** SIGTERM, then SIGKILL if it has not exited within 10 s. */
export function stopProcess(proc) {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    const timer = setTimeout(() => proc.kill("SIGKILL"), 10000);
    proc.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    proc.kill("SIGTERM");
  });
}

/** One CometQL statement through the mariadb CLI, as a PHP backend would send it. Returns the tab-separated rows. */
export function cometql(server, tenant, sql) {
  return run("mariadb", [
    "--skip-ssl",
    "-h127.0.0.1",
    `-P${server.cometqlPort}`,
    `-u${tenant.devId}`,
    `-p${tenant.key}`,
    "-D",
    "CometQL_v1",
    "--batch",
    "--skip-column-names",
    "-e",
    sql,
  ]);
}

/** An HS256 user token as the backend signs it: key = the tenant's secret key followed by its dev_id. */
export function userJwt(tenant, userId, ttlSeconds = 600) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ user_id: userId, exp: Math.floor(Date.now() / 1000) + ttlSeconds })}`;
  const sig = createHmac("sha256", tenant.key + String(tenant.devId)).update(body).digest("base64url");
  return `${body}.${sig}`;
}

const PAGES = {
  "/classic.html": `<!doctype html><meta charset="utf-8"><title>classic</title>
<script src="/dist/halley.js"></script>
<script>window.got = []; window.record = (tag) => (m) => window.got.push({ tag, data: m.data, info: m.server_info });</script>`,
  "/module.html": `<!doctype html><meta charset="utf-8"><title>module</title>
<script type="module">import * as H from "/dist/halley.mjs"; window.H = H; window.got = []; window.moduleReady = true;</script>`,
};

/** Serves the test pages and dist/ on 127.0.0.1:0. */
export async function startStatic() {
  const server = createServer(async (req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if (path === "/favicon.ico") {
      res.writeHead(204);
      return res.end();
    }
    if (PAGES[path]) {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      return res.end(PAGES[path]);
    }
    const file = normalize(join(SDK_ROOT, path));
    if (path.startsWith("/dist/") && file.startsWith(join(SDK_ROOT, "dist"))) {
      try {
        const body = await readFile(file);
        const type = path.endsWith(".ts") ? "text/plain" : "text/javascript";
        res.writeHead(200, { "content-type": `${type}; charset=utf-8`, "cache-control": "no-store" });
        return res.end(body);
      } catch {
        // Fall through to 404.
      }
    }
    res.writeHead(404);
    res.end("not found");
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    origin: `http://127.0.0.1:${port}`,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Headless Debian Chromium; playwright gives each launch a fresh temporary profile (--user-data-dir). */
export function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [...CHROMIUM_FLAGS, ...extraArgs],
    timeout: 30000,
  });
}

/** Everything a test file needs, started once; `stop()` ends it all. */
export async function startWorld() {
  const tenant = await newTenant();
  const world = { tenant, server: null, web: null, browser: null };
  try {
    world.server = await startHalley(tenant);
    world.web = await startStatic();
    world.browser = await launchChromium();
  } catch (err) {
    await stopWorld(world);
    throw err;
  }
  world.publish = (sql) => cometql(world.server, tenant, sql);
  return world;
}

export async function stopWorld(world) {
  if (world.browser) await world.browser.close().catch(() => {});
  if (world.web) await world.web.stop();
  if (world.server) await world.server.stop();
  if (world.tenant) await rm(world.tenant.dataDir, { recursive: true, force: true });
}

/** A page of a browser context with the classic script loaded; `context` defaults to a new one. */
export async function openPage(world, { context, module = false } = {}) {
  const ctx = context || (await world.browser.newContext());
  const page = await ctx.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.consoleErrors = [];
  page.on("console", (msg) => msg.type() === "error" && page.consoleErrors.push(msg.text()));
  page.sockets = [];
  page.on("websocket", (ws) => page.sockets.push(ws));
  await page.goto(world.web.origin + (module ? "/module.html" : "/classic.html"));
  if (module) await page.waitForFunction(() => window.moduleReady === true);
  return page;
}

/** Waits (bounded) until `fn` is true in the page. */
export function until(page, fn, arg, timeout = WAIT_MS) {
  return page.waitForFunction(fn, arg, { timeout, polling: 50 });
}

/** Lets frames that should NOT arrive have their chance to, before asserting that they did not. */
export const quietPeriod = (ms = 700) => new Promise((r) => setTimeout(r, ms));
