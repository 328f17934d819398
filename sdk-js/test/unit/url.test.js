import { test } from "node:test";
import assert from "node:assert/strict";
import { buildUrl, encodeKey, normalizeNode, defaultNode, useSecure, pickNode } from "../../src/url.js";

const UUID = "abcdefghijklmnopqrstuvwxyz012345";

test("the URL is the original's, byte for byte", () => {
  const url = buildUrl({ node: "comet.example.com", secure: false, userKey: "k3yHash", userId: 5, devId: 15, uuid: UUID });
  assert.equal(url, `ws://comet.example.com/ws/sesion=k3yHash&myid=5&devid=15&v=4.08&uuid=${UUID}&api=js`);
});

test("wss, a port, and anonymous users (empty key, user 0)", () => {
  const url = buildUrl({ node: "127.0.0.1:8087", secure: true, devId: "3", uuid: UUID });
  assert.equal(url, `wss://127.0.0.1:8087/ws/sesion=&myid=0&devid=3&v=4.08&uuid=${UUID}&api=js`);
});

test("hash and JWT keys go out unchanged; URL-breaking characters are percent-encoded", () => {
  assert.equal(encodeKey("aZ09=+/_"), "aZ09=+/_");
  const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjo1fQ.sig-_x";
  assert.equal(encodeKey(jwt), jwt);
  assert.equal(encodeKey("a&b#c d%"), "a%26b%23c%20d%25");
});

test("node: scheme and trailing slashes are dropped; the default is the page's host", () => {
  assert.equal(normalizeNode("https://comet.example.com/"), "comet.example.com");
  assert.equal(normalizeNode("comet.example.com:8087/comet-server"), "comet.example.com:8087/comet-server");
  assert.equal(defaultNode({ host: "app.example.com:8443" }), "app.example.com:8443");
  assert.equal(defaultNode(undefined), "");
});

test("wss follows the page unless forced", () => {
  assert.equal(useSecure(undefined, { protocol: "https:" }), true);
  assert.equal(useSecure(undefined, { protocol: "http:" }), false);
  assert.equal(useSecure(true, { protocol: "http:" }), true);
  assert.equal(useSecure(false, { protocol: "https:" }), false);
});

test("a node list: one node per user, the next one after a failure", () => {
  const nodes = ["a", "b", "c"];
  assert.equal(pickNode(nodes, 4, 0), "b");
  assert.equal(pickNode(nodes, 4, 1), "c");
  assert.equal(pickNode(nodes, 4, 2), "a");
  assert.equal(pickNode(nodes, undefined, 0), "a");
  assert.equal(pickNode(["only"], 7, 5), "only");
});
