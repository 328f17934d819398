import { test } from "node:test";
import assert from "node:assert/strict";
import { Connection, SUBSCRIBE_BATCH_MS, STABLE_AFTER_MS, CHECK_AFTER_FAILURES, GREETING_WAIT_MS } from "../../src/socket.js";
import { Backoff } from "../../src/backoff.js";
import { FakeClock, SocketLog } from "../support/fakes.js";

function setup({ random = () => 0.999999, waitGreeting = false } = {}) {
  const clock = new FakeClock();
  const sockets = new SocketLog();
  const texts = [];
  const statuses = [];
  const env = {
    WebSocket: sockets.ctor(),
    setTimeout: (f, ms) => clock.setTimeout(f, ms),
    clearTimeout: (id) => clock.clearTimeout(id),
    navigator: { onLine: true },
  };
  const conn = new Connection({
    urlFor: (failures) => `ws://node/ws/try${failures}`,
    env,
    backoff: new Backoff({ baseMs: 500, maxMs: 30000 }, random),
    onText: (t) => texts.push(t),
    onStatus: (s) => statuses.push(s),
    log: () => {},
    waitGreeting,
  });
  return { clock, sockets, texts, statuses, conn, env };
}

test("subscribes on open, batches changes, and re-sends the list on every reconnect", () => {
  const { clock, sockets, conn, statuses } = setup();
  conn.setPipes(["chat"]);
  conn.start();
  sockets.last.serverOpen();
  assert.deepEqual(sockets.last.sent, ["subscription\nchat"]);
  conn.setPipes(["chat", "news"]);
  conn.setPipes(["chat", "news", "web_x"]);
  clock.advance(SUBSCRIBE_BATCH_MS);
  assert.deepEqual(sockets.last.sent, ["subscription\nchat", "subscription\nchat\nnews\nweb_x"]);
  conn.setPipes(["chat", "news", "web_x"]);
  clock.advance(SUBSCRIBE_BATCH_MS);
  assert.equal(sockets.last.sent.length, 2, "an unchanged list is not sent again");

  sockets.last.serverClose(1006);
  clock.advance(1000);
  assert.equal(sockets.sockets.length, 2);
  sockets.last.serverOpen();
  assert.deepEqual(sockets.last.sent, ["subscription\nchat\nnews\nweb_x"]);
  assert.deepEqual(statuses, [true, false, true]);
});

test("commands wait in a queue while disconnected and go out after the subscription", () => {
  const { sockets, conn } = setup();
  conn.setPipes(["chat"]);
  conn.start();
  assert.equal(conn.send("pipe_log\nchat\nm1\n"), false);
  sockets.last.serverOpen();
  assert.deepEqual(sockets.last.sent, ["subscription\nchat", "pipe_log\nchat\nm1\n"]);
  assert.equal(conn.send("pipe_count\nweb_x\nm2\n"), true);
});

test("a server restart's clean close (1001) reconnects too, with growing jittered delays", () => {
  const { clock, sockets, conn } = setup();
  conn.start();
  sockets.last.serverOpen();
  sockets.last.serverClose(1001);
  const attempts = [];
  let last = sockets.sockets.length;
  let waited = 0;
  // Refuse every attempt and record when each one came.
  while (attempts.length < 8 && waited < 200000) {
    clock.advance(50);
    waited += 50;
    if (sockets.sockets.length > last) {
      last = sockets.sockets.length;
      attempts.push(waited);
      sockets.last.serverClose(1006);
    }
  }
  const gaps = attempts.map((t, i) => t - (i ? attempts[i - 1] : 0));
  assert.deepEqual(gaps, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
});

test("the delay starts again from the base after a connection that stayed up", () => {
  const { clock, sockets, conn } = setup();
  conn.start();
  for (let i = 0; i < 4; i++) {
    sockets.last.serverClose(1006);
    clock.advance(60000);
  }
  sockets.last.serverOpen();
  sockets.last.serverSend('{"authorized":false,"data":"","event":"serverInfo","pipe":"sys"}');
  clock.advance(STABLE_AFTER_MS);
  const before = sockets.sockets.length;
  sockets.last.serverClose(1006);
  clock.advance(499);
  assert.equal(sockets.sockets.length, before);
  clock.advance(1);
  assert.equal(sockets.sockets.length, before + 1, "first retry after the base delay");
});

test("a server that accepts and drops at once does not reset the backoff (no storm)", () => {
  const { clock, sockets, conn } = setup();
  conn.start();
  let opened = 0;
  for (let t = 0; t < 60000; t += 10) {
    const ws = sockets.last;
    if (ws.readyState === 0) {
      ws.serverOpen();
      ws.serverSend('{"authorized":false,"data":"","event":"serverInfo","pipe":"sys"}');
      ws.serverClose(1008);
      opened++;
    }
    clock.advance(10);
  }
  assert.ok(opened <= 8, `${opened} connections in a minute`);
});

test("stop() closes and never reconnects; a fatal refusal is not retried", () => {
  const a = setup();
  a.conn.start();
  a.sockets.last.serverOpen();
  a.conn.stop();
  assert.deepEqual(a.sockets.last.closedByPage, { code: 1000, reason: "stop" });
  a.clock.advance(120000);
  assert.equal(a.sockets.sockets.length, 1);

  const b = setup();
  b.conn.start();
  b.sockets.last.serverOpen();
  b.conn.markFatal();
  b.sockets.last.serverClose(1008);
  b.clock.advance(120000);
  assert.equal(b.sockets.sockets.length, 1);
});

test("while the browser is offline no socket is opened", () => {
  const { clock, sockets, conn, env } = setup();
  env.navigator.onLine = false;
  conn.start();
  clock.advance(10000);
  assert.equal(sockets.sockets.length, 0);
  env.navigator.onLine = true;
  clock.advance(1000);
  assert.equal(sockets.sockets.length, 1);
});

test("failures move to the next node of a list", () => {
  const { clock, sockets, conn } = setup();
  conn.start();
  assert.equal(sockets.last.url, "ws://node/ws/try0");
  sockets.last.serverClose(1006);
  clock.advance(1000);
  assert.equal(sockets.last.url, "ws://node/ws/try1");
});

test("after CHECK_AFTER_FAILURES sockets that never opened it asks why once, and a refusal stops the retries", async () => {
  const clock = new FakeClock();
  const sockets = new SocketLog();
  const logged = [];
  const asked = [];
  const conn = new Connection({
    urlFor: (failures) => `ws://node/ws/try${failures}`,
    env: {
      WebSocket: sockets.ctor(),
      setTimeout: (f, ms) => clock.setTimeout(f, ms),
      clearTimeout: (id) => clock.clearTimeout(id),
      navigator: { onLine: true },
    },
    backoff: new Backoff({ baseMs: 500, maxMs: 30000 }, () => 0.999999),
    onText: () => {},
    onStatus: () => {},
    log: (level, ...args) => logged.push([level, args.join(" ")]),
    checkRefused: async (url) => {
      asked.push(url);
      return 'not in the "Allowed origins"';
    },
  });
  conn.start();
  for (let i = 1; i < CHECK_AFTER_FAILURES; i++) {
    sockets.last.serverClose(1006);
    clock.advance(60000);
  }
  assert.equal(asked.length, 0, "not before CHECK_AFTER_FAILURES");
  sockets.last.serverClose(1006);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(asked, [`ws://node/ws/try${CHECK_AFTER_FAILURES - 1}`]);
  assert.ok(logged.some(([level, text]) => level === 0 && text.includes('"Allowed origins"')));
  const made = sockets.sockets.length;
  clock.advance(600000);
  assert.equal(sockets.sockets.length, made, "no more attempts after the refusal");
});

test("a socket that opened resets the count; an unknown answer keeps retrying", async () => {
  const clock = new FakeClock();
  const sockets = new SocketLog();
  let asked = 0;
  const conn = new Connection({
    urlFor: () => "ws://node/ws/x",
    env: {
      WebSocket: sockets.ctor(),
      setTimeout: (f, ms) => clock.setTimeout(f, ms),
      clearTimeout: (id) => clock.clearTimeout(id),
      navigator: { onLine: true },
    },
    backoff: new Backoff({ baseMs: 500, maxMs: 30000 }, () => 0.999999),
    onText: () => {},
    onStatus: () => {},
    log: () => {},
    checkRefused: async () => {
      asked++;
      return null;
    },
  });
  conn.start();
  sockets.last.serverClose(1006);
  clock.advance(60000);
  sockets.last.serverOpen();
  sockets.last.serverClose(1006);
  clock.advance(60000);
  for (let i = 1; i < CHECK_AFTER_FAILURES; i++) {
    sockets.last.serverClose(1006);
    clock.advance(60000);
  }
  assert.equal(asked, 0, "the count started again after the open");
  sockets.last.serverClose(1006);
  await new Promise((r) => setImmediate(r));
  assert.equal(asked, 1);
  const made = sockets.sockets.length;
  clock.advance(60000);
  assert.equal(sockets.sockets.length, made + 1, "still retrying");
});

test("connected only once the server greeted the socket (it links the user first), or after the wait", () => {
  const { clock, sockets, conn, statuses } = setup({ waitGreeting: true });
  conn.start();
  sockets.last.serverOpen();
  assert.deepEqual(statuses, [], "open but not greeted: a private message could still miss this connection");
  conn.greet();
  assert.deepEqual(statuses, [true]);
  sockets.last.serverClose(1006);
  assert.deepEqual(statuses, [true, false]);
  clock.advance(1000);
  sockets.last.serverOpen();
  clock.advance(GREETING_WAIT_MS - 1);
  assert.deepEqual(statuses, [true, false]);
  clock.advance(1);
  assert.deepEqual(statuses, [true, false, true], "a server that never greets: connected after the wait");
});
