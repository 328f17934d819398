// Pages in headless Chromium that use the comet-server API as a customer's page does, for the cluster tests
// (tests/tests/it/cluster_chromium.rs): each page loads /CometServerApi.js from its node, starts with
// `node: "<host:port>"` and subscribes one pipe. Reads one JSON request on stdin:
//   {"pages": [{"node": "127.0.0.1:8087", "dev_id": 1}, ...], "pipe": "web_chat", "expect": 100}
// prints {"ready": true} once every page has loaded (the Rust side then waits until the server counts the
// subscriptions), then waits (bounded) until every page got `expect` messages of the pipe and prints
// {"pages": [[data, ...], ...]} (what each page got, in order; fewer on timeout) and exits.
// playwright-core comes from sdk-js/node_modules (tests/run.sh installs it); Chromium is Debian's.

import { createServer } from "node:http";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(fileURLToPath(new URL("../../sdk-js/package.json", import.meta.url)));
const { chromium } = require("playwright-core");

const WAIT_MS = 10000;
const RECEIVE_MS = Number(process.env.HALLEY_TEST_RECEIVE_MS || 60000);

async function readStdin() {
  let text = "";
  for await (const chunk of process.stdin) text += chunk;
  return JSON.parse(text);
}

function page(node, devId, pipe) {
  return `<!doctype html><meta charset="utf-8"><title>cluster page</title>
<script src="http://${node}/CometServerApi.js"></script>
<script>
  window.got = [];
  CometServer().start({ dev_id: ${devId}, node: ${JSON.stringify(node)} });
  CometServer().subscription(${JSON.stringify(pipe)}, (e) => window.got.push(e.data));
</script>`;
}

const req = await readStdin();
const web = createServer((q, res) => {
  const url = new URL(q.url, "http://x");
  if (url.pathname !== "/page.html") {
    res.writeHead(404);
    return res.end();
  }
  res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
  res.end(page(url.searchParams.get("node"), Number(url.searchParams.get("dev_id")), req.pipe));
});
await new Promise((resolve) => web.listen(0, "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${web.address().port}`;

const browser = await chromium.launch({
  executablePath: process.env.HALLEY_TEST_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  timeout: 30000,
});
try {
  // One context per page: pages of one context share a connection between tabs (leader election).
  const pages = [];
  for (const p of req.pages) {
    const ctx = await browser.newContext();
    const pg = await ctx.newPage();
    pg.setDefaultTimeout(WAIT_MS);
    await pg.goto(`${origin}/page.html?node=${encodeURIComponent(p.node)}&dev_id=${p.dev_id}`);
    pages.push(pg);
  }
  process.stdout.write(JSON.stringify({ ready: true }) + "\n");
  await Promise.all(
    pages.map((pg) =>
      pg
        .waitForFunction((n) => window.got.length >= n, req.expect, { timeout: RECEIVE_MS, polling: 50 })
        .catch(() => {}),
    ),
  );
  const got = [];
  for (const pg of pages) got.push(await pg.evaluate(() => window.got));
  process.stdout.write(JSON.stringify({ pages: got }) + "\n");
} finally {
  await browser.close().catch(() => {});
  web.close();
}
