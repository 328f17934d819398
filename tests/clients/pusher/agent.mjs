// A Pusher-protocol test agent driven by the Rust integration tests (tests/support/pusher.rs): real
// pusher-js (Node build) and laravel-echo clients, the npm `pusher` server library for the HTTP API, and
// a tiny auth endpoint made with that library (the same signing as Laravel's PHP library).
//
// Protocol: one JSON command per line on stdin, JSON events, one per line, on stdout.
//   {"op":"init","host","port","appId","key","secret","masterKey"?}      -> {"ev":"ready","authPort"}
//   {"op":"connect","id","user"?,"name"?}                                -> {"id","ev":"connected","socket_id"}
//   {"op":"subscribe","id","channel"}     -> {"id","ev":"subscribed","channel","members"?}, then
//        {"id","ev":"event","channel","event","data","user_id"?}, {"ev":"member_added"|"member_removed"}
//   {"op":"unsubscribe","id","channel"}
//   {"op":"client_event","id","channel","event","data"}                  -> {"id","ev":"client_sent","ok"}
//   {"op":"echo","id","kind":"channel"|"private"|"join"|"encryptedPrivate","channel","event"?,"whisper"?}
//        -> {"id","ev":"echo_event"|"here"|"joining"|"leaving"|"whisper", ...}
//   {"op":"whisper","id","kind","channel","event","data"}
//   {"op":"signin","id"}                   -> {"id","ev":"signed_in"}, then {"id","ev":"user_event",...}
//   {"op":"disconnect","id"}
//   {"op":"trigger","channels","event","data","socket_id"?}             -> {"ev":"http","op","status","body"}
//   {"op":"batch","batch"} {"op":"send_to_user","user","event","data"} {"op":"terminate","user"}
//   {"op":"get","path","params"?}                                        -> {"ev":"http","op","status","body"}
//   {"op":"browser","id","user","public","presence"} opens a page in Chromium (playwright-core) that loads
//        pusher-js's and Echo's browser builds from the auth endpoint's server (same origin, so the auth
//        request is the page's own), listens on `public` (event `.flash`) and joins `presence`; reports
//        {"id","ev":"echo_event"|"here"|"joining"|"leaving",...} like an Echo client here.
//   {"op":"comet_page","id","listen"} opens a CometServer() page (the comet SDK from Halley's /sdk/halley.js)
//        subscribed to `listen` ("pipe.event"): {"id","ev":"comet_ready"}, then {"id","ev":"comet_event","data"}
//   {"op":"close_browser","id"}
// Errors of the connection: {"id","ev":"error","data"}, state changes {"id","ev":"state","state"}.

import http from 'node:http';
import readline from 'node:readline';
import Pusher from 'pusher-js';
import PusherServer from 'pusher';
import Echo from 'laravel-echo';
import { readFile } from 'node:fs/promises';
import { chromium } from 'playwright-core';

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
let cfg = null;
let server = null;
let authPort = 0;
const clients = new Map();

async function startAuth() {
  const srv = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const url = new URL(req.url, 'http://x');
      const asset = ASSETS[url.pathname];
      if (asset) {
        return readFile(new URL(asset.file, import.meta.url)).then((bytes) => {
          res.writeHead(200, { 'content-type': asset.type });
          res.end(bytes);
        });
      }
      const form = new URLSearchParams(body);
      const socketId = form.get('socket_id');
      const user = url.searchParams.get('user') || 'anonymous';
      const name = url.searchParams.get('name') || `User ${user}`;
      let answer;
      try {
        if (url.pathname === '/signin') {
          answer = server.authenticateUser(socketId, { id: user, name });
        } else {
          const channel = form.get('channel_name');
          if (url.searchParams.get('deny') === '1') {
            res.writeHead(403);
            return res.end('denied');
          }
          answer = channel.startsWith('presence-')
            ? server.authorizeChannel(socketId, channel, { user_id: user, user_info: { name } })
            : server.authorizeChannel(socketId, channel);
        }
      } catch (e) {
        res.writeHead(500);
        return res.end(String(e));
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer));
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return srv.address().port;
}

// The page's files, served by the auth endpoint's server.
const ASSETS = {
  '/page.html': { file: './page.html', type: 'text/html' },
  '/comet.html': { file: './comet.html', type: 'text/html' },
  '/pusher.js': { file: '../node_modules/pusher-js/dist/web/pusher.min.js', type: 'text/javascript' },
  '/echo.js': { file: '../node_modules/laravel-echo/dist/echo.iife.js', type: 'text/javascript' },
};

let chromiumBrowser = null;
const pages = new Map();

async function openBrowser(c, file = 'page.html', params = null) {
  if (!chromiumBrowser) {
    chromiumBrowser = await chromium.launch({
      executablePath: process.env.HALLEY_TEST_CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
      timeout: 30000,
    });
  }
  const page = await chromiumBrowser.newPage();
  pages.set(c.id, page);
  await page.exposeFunction('report', (o) => out({ id: c.id, ...o }));
  page.on('pageerror', (e) => out({ id: c.id, ev: 'page_error', error: String(e) }));
  const q = new URLSearchParams(params || {
    key: cfg.key, host: cfg.host, port: String(cfg.port), user: c.user, name: `User ${c.user}`,
    public: c.public, presence: c.presence,
  });
  await page.goto(`http://127.0.0.1:${authPort}/${file}?${q}`);
}

function pusherOptions(c) {
  const q = `user=${encodeURIComponent(c.user || 'anonymous')}&name=${encodeURIComponent(c.name || '')}`;
  return {
    wsHost: cfg.host,
    wsPort: cfg.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    cluster: 'halley',
    channelAuthorization: { endpoint: `http://127.0.0.1:${authPort}/auth?${q}`, transport: 'ajax' },
    userAuthentication: { endpoint: `http://127.0.0.1:${authPort}/signin?${q}`, transport: 'ajax' },
  };
}

function connect(c) {
  const p = new Pusher(cfg.key, pusherOptions(c));
  const echo = new Echo({ broadcaster: 'reverb', key: cfg.key, client: p });
  clients.set(c.id, { p, echo, channels: new Map() });
  p.connection.bind('connected', () => out({ id: c.id, ev: 'connected', socket_id: p.connection.socket_id }));
  p.connection.bind('state_change', (s) => out({ id: c.id, ev: 'state', state: s.current }));
  p.connection.bind('error', (e) => out({ id: c.id, ev: 'error', data: e && e.data ? e.data : String(e && e.type) }));
  p.bind('pusher:error', (d) => out({ id: c.id, ev: 'pusher_error', data: d }));
}

function subscribe(c) {
  const { p } = clients.get(c.id);
  const ch = p.subscribe(c.channel);
  ch.bind('pusher:subscription_succeeded', (d) => {
    const members = d && d.ids ? { ids: d.ids, count: d.count, me: d.me && d.me.id } : undefined;
    out({ id: c.id, ev: 'subscribed', channel: c.channel, members });
  });
  ch.bind('pusher:subscription_error', (e) => out({ id: c.id, ev: 'subscription_error', channel: c.channel, status: e.status }));
  ch.bind('pusher:member_added', (m) => out({ id: c.id, ev: 'member_added', channel: c.channel, user: m.id, info: m.info }));
  ch.bind('pusher:member_removed', (m) => out({ id: c.id, ev: 'member_removed', channel: c.channel, user: m.id }));
  ch.bind('pusher:cache_miss', () => out({ id: c.id, ev: 'cache_miss', channel: c.channel }));
  ch.bind_global((event, data, meta) => {
    if (event.startsWith('pusher:')) return;
    out({ id: c.id, ev: 'event', channel: c.channel, event, data, user_id: meta && meta.user_id });
  });
}

function echoListen(c) {
  const { echo } = clients.get(c.id);
  const ch =
    c.kind === 'join' ? echo.join(c.channel)
    : c.kind === 'private' ? echo.private(c.channel)
    : c.kind === 'encryptedPrivate' ? echo.encryptedPrivate(c.channel)
    : echo.channel(c.channel);
  if (c.event) ch.listen(c.event, (data) => out({ id: c.id, ev: 'echo_event', channel: c.channel, event: c.event, data }));
  if (c.whisper) ch.listenForWhisper(c.whisper, (data) => out({ id: c.id, ev: 'whisper', channel: c.channel, event: c.whisper, data }));
  if (c.kind === 'join') {
    ch.here((users) => out({ id: c.id, ev: 'here', channel: c.channel, users: users.map((u) => u.name) }))
      .joining((u) => out({ id: c.id, ev: 'joining', channel: c.channel, user: u.name }))
      .leaving((u) => out({ id: c.id, ev: 'leaving', channel: c.channel, user: u.name }));
  } else {
    ch.subscribed(() => out({ id: c.id, ev: 'echo_subscribed', channel: c.channel }));
  }
  ch.error((e) => out({ id: c.id, ev: 'echo_error', channel: c.channel, error: e && e.status }));
}

function whisper(c) {
  const { echo } = clients.get(c.id);
  const ch = c.kind === 'join' ? echo.join(c.channel) : echo.private(c.channel);
  ch.whisper(c.event, c.data);
  out({ id: c.id, ev: 'whispered' });
}

function signin(c) {
  const { p } = clients.get(c.id);
  p.user.bind_global((event, data) => out({ id: c.id, ev: 'user_event', event, data }));
  p.signin();
  p.user.signinDonePromise.then(() => {
    const ch = p.user.serverToUserChannel;
    if (ch.subscribed) return out({ id: c.id, ev: 'signed_in', user: p.user.user_data.id });
    ch.bind('pusher:subscription_succeeded', () => out({ id: c.id, ev: 'signed_in', user: p.user.user_data.id }));
  });
}

async function http_(op, promise) {
  try {
    const r = await promise;
    out({ ev: 'http', op, status: r.status, body: await r.text() });
  } catch (e) {
    const status = e.status || 0;
    out({ ev: 'http', op, status, body: e.body || String(e) });
  }
}

async function handle(m) {
  switch (m.op) {
    case 'init':
      cfg = m;
      server = new PusherServer({
        appId: String(m.appId), key: m.key, secret: m.secret, host: m.host, port: String(m.port), useTLS: false,
        ...(m.masterKey ? { encryptionMasterKeyBase64: m.masterKey } : {}),
      });
      authPort = await startAuth();
      return out({ ev: 'ready', authPort });
    case 'connect': return connect(m);
    case 'subscribe': return subscribe(m);
    case 'unsubscribe': return clients.get(m.id).p.unsubscribe(m.channel);
    case 'client_event': {
      const ok = clients.get(m.id).p.channel(m.channel).trigger(m.event, m.data);
      return out({ id: m.id, ev: 'client_sent', ok });
    }
    case 'echo': return echoListen(m);
    case 'whisper': return whisper(m);
    case 'signin': return signin(m);
    case 'disconnect': return clients.get(m.id).p.disconnect();
    case 'trigger': {
      const params = m.socket_id ? { socket_id: m.socket_id } : undefined;
      return http_('trigger', server.trigger(m.channels, m.event, m.data, params));
    }
    case 'batch': return http_('batch', server.triggerBatch(m.batch));
    case 'send_to_user': return http_('send_to_user', server.sendToUser(m.user, m.event, m.data));
    case 'terminate': return http_('terminate', server.terminateUserConnections(m.user));
    case 'get': return http_('get', server.get({ path: m.path, params: m.params || {} }));
    case 'browser': return openBrowser(m);
    case 'comet_page':
      return openBrowser(m, 'comet.html', { dev_id: String(cfg.appId), node: `${cfg.host}:${cfg.port}`, listen: m.listen });
    case 'close_browser': {
      const page = pages.get(m.id);
      pages.delete(m.id);
      return page.close();
    }
    case 'exit':
      if (chromiumBrowser) await chromiumBrowser.close();
      process.exit(0);
    default: out({ ev: 'bad_op', op: m.op });
  }
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!line.trim()) return;
  handle(JSON.parse(line)).catch((e) => out({ ev: 'agent_error', error: String(e && e.stack) }));
});
rl.on('close', async () => {
  if (chromiumBrowser) await chromiumBrowser.close().catch(() => {});
  process.exit(0);
});
