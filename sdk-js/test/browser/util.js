// Steps the browser tests share: connect a page with the classic API, wait until the server has a page's
// subscription, read what a page's callbacks recorded.

import { until, WAIT_MS } from "./harness.js";

/** CometServer().start(...) in the page, then waits until it is connected. */
export async function connectPage(page, world, options = {}) {
  const opts = { dev_id: world.tenant.devId, node: world.server.node, ...options };
  await page.evaluate((o) => window.CometServer().start(o), opts);
  await until(page, () => window.CometServer().isConnected() === true);
}

/** Polls the CometQL `pipes` table until `pipe` has at least `n` subscribed connections (bounded). */
export async function waitSubscribers(world, pipe, n, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  let last = "";
  while (Date.now() < deadline) {
    last = await world.publish(`SELECT name, users FROM pipes WHERE name = '${pipe}'`);
    const users = Number(last.trim().split("\t")[1]);
    if (users >= n) return users;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`pipe ${pipe} has not ${n} subscriber(s) after ${timeout} ms (last answer: ${JSON.stringify(last)})`);
}

/** How many connections are subscribed to `pipe` now. */
export async function subscribers(world, pipe) {
  const out = await world.publish(`SELECT name, users FROM pipes WHERE name = '${pipe}'`);
  return Number(out.trim().split("\t")[1]);
}

/** What the page's `record(tag)` callbacks got. */
export function recorded(page, tag) {
  return page.evaluate((t) => window.got.filter((g) => t === undefined || g.tag === t), tag);
}

/** Waits until the page recorded at least `n` entries under `tag`. */
export function waitRecorded(page, tag, n = 1) {
  return until(page, ({ t, k }) => window.got.filter((g) => g.tag === t).length >= k, { t: tag, k: n });
}
