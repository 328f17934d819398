// The committed build outputs: what the server embeds and serves.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import vm from "node:vm";
import { fileURLToPath } from "node:url";

const dist = (name) => fileURLToPath(new URL("../../dist/" + name, import.meta.url));

test("dist/ is what `npm run build` makes from src/ (byte for byte)", () => {
  const out = execFileSync(process.execPath, [fileURLToPath(new URL("../../scripts/check-dist.mjs", import.meta.url))], {
    encoding: "utf8",
    timeout: 60000,
  });
  assert.match(out, /up to date/);
});

test("the classic script defines the original's globals and is an IIFE (no module syntax)", () => {
  const code = readFileSync(dist("halley.js"), "utf8");
  const window = { console };
  window.globalThis = window;
  vm.runInNewContext(code, window, { timeout: 5000 });
  assert.equal(typeof window.CometServer, "function");
  assert.equal(window.CometServer(), window.cometApi);
  assert.equal(typeof window.cometServerApi, "function");
  assert.equal(window._cometServerApi, window.cometServerApi);
  assert.equal(typeof window.Halley, "function");
  assert.equal(window.cometApi.version, "4.08");
  const other = new window.cometServerApi();
  assert.notEqual(other, window.cometApi);
  // Loading it a second time keeps the first instance (its subscriptions stay with the started object).
  const first = window.cometApi;
  vm.runInNewContext(code, window, { timeout: 5000 });
  assert.equal(window.cometApi, first);
});

test("the ES module exports both styles", async () => {
  const mod = await import(dist("halley.mjs"));
  for (const name of ["CometServer", "cometApi", "cometServerApi", "_cometServerApi", "Halley", "CometServerApi", "API_VERSION"]) {
    assert.ok(mod[name] !== undefined, name);
  }
  assert.equal(mod.CometServer(), mod.cometApi);
  assert.equal(mod.API_VERSION, "4.08");
});

test("the type declarations name every export of the module", async () => {
  const dts = readFileSync(dist("halley.d.ts"), "utf8");
  const mod = await import(dist("halley.mjs"));
  for (const name of Object.keys(mod)) assert.match(dts, new RegExp(`export declare (const|function|class) ${name}\\b`), name);
  for (const m of ["subscription", "web_pipe_send", "get_pipe_log", "onAuthFalill", "getTabUUID"]) assert.match(dts, new RegExp(`\\b${m}\\(`));
});
