// Quick start: the tenant's credentials filled into copy-paste snippets, a form that publishes a test
// message, and a live view that shows messages arrive on the pipe.

import { api } from "./api.js";
import { h, show, field, busy, snippet } from "./dom.js";
import { subscribe } from "./live.js";

function phpSnippet(host, port, devId, key) {
  return `<?php
// Publish to the pipe "chat" with CometQL (the MySQL protocol).
$link = mysqli_connect("${host}", "${devId}", "${key}", "CometQL_v1", ${port});
mysqli_query($link, "INSERT INTO pipes_messages (name, event, message)
                     VALUES ('chat', 'msg', 'Hello from PHP')");`;
}

function cliSnippet(host, port, devId, key) {
  return `mariadb --skip-ssl -h${host} -P${port} -u${devId} -p${key} \\
  -e "INSERT INTO pipes_messages (name, event, message) VALUES ('chat', 'msg', 'hi')"`;
}

function jsSnippet(origin, httpHost, devId) {
  return `<script src="${origin}/sdk/halley.js"></script>
<script>
  CometServer().start({ dev_id: ${devId}, node: "${httpHost}" });
  CometServer().subscription("chat.msg", function (e) {
    console.log("received", e.data);
  });
</script>`;
}

/** Laravel's broadcasting over the Pusher protocol: the `.env` lines (Reverb broadcaster). */
export function laravelEnv(location, devId, appKey, key) {
  const https = location.protocol === "https:";
  const port = location.port || (https ? "443" : "80");
  return `BROADCAST_CONNECTION=reverb
REVERB_APP_ID=${devId}
REVERB_APP_KEY=${appKey}
REVERB_APP_SECRET=${key}
REVERB_HOST=${location.hostname}
REVERB_PORT=${port}
REVERB_SCHEME=${https ? "https" : "http"}

VITE_REVERB_APP_KEY="\${REVERB_APP_KEY}"
VITE_REVERB_HOST="\${REVERB_HOST}"
VITE_REVERB_PORT="\${REVERB_PORT}"
VITE_REVERB_SCHEME="\${REVERB_SCHEME}"`;
}

function echoSnippet() {
  return `// resources/js/echo.js (npm install laravel-echo pusher-js)
import Echo from "laravel-echo";
import Pusher from "pusher-js";
window.Pusher = Pusher;

window.Echo = new Echo({
  broadcaster: "reverb",
  key: import.meta.env.VITE_REVERB_APP_KEY,
  wsHost: import.meta.env.VITE_REVERB_HOST,
  wsPort: import.meta.env.VITE_REVERB_PORT ?? 80,
  wssPort: import.meta.env.VITE_REVERB_PORT ?? 443,
  forceTLS: (import.meta.env.VITE_REVERB_SCHEME ?? "https") === "https",
  enabledTransports: ["ws", "wss"],
});

// A public channel named like a pipe is that pipe: CometQL INSERTs to "chat" arrive here too.
window.Echo.channel("chat").listen(".msg", (e) => console.log("received", e));`;
}

/** Two panels behind a tab list (CometQL, Laravel); the first is shown. */
function tabs(panels) {
  const list = h("div", { class: "tabs", role: "tablist", "aria-label": "How your backend publishes" });
  const bodies = [];
  panels.forEach(([label, id, children], i) => {
    const tab = h("button", { type: "button", role: "tab", id: `tab-${id}`, "aria-controls": `panel-${id}`,
      "aria-selected": i === 0 ? "true" : "false", class: "tab" }, label);
    const body = h("div", { role: "tabpanel", id: `panel-${id}`, "aria-labelledby": `tab-${id}` }, ...children);
    body.hidden = i !== 0;
    tab.addEventListener("click", () => {
      for (const t of list.children) t.setAttribute("aria-selected", t === tab ? "true" : "false");
      for (const b of bodies) b.hidden = b !== body;
    });
    list.append(tab);
    bodies.push(body);
  });
  return [list, ...bodies];
}

function liveCard(ctx, pipeInput) {
  const status = h("span", { class: "live-status", id: "live-status", "data-state": "connecting" },
    h("span", { class: "dot", "aria-hidden": "true" }), h("span", { class: "text" }, "Connecting…"));
  const log = h("ul", { class: "live-log", id: "live-log", "aria-live": "polite", "aria-label": "Messages received" });
  const texts = { connecting: "Connecting…", open: "Listening", error: "Disconnected, reconnecting…" };
  let sub = null;
  let pipe = null;
  const listen = () => {
    const next = pipeInput.value.trim() || "chat";
    if (next === pipe) return;
    pipe = next;
    if (sub) sub.close();
    sub = subscribe(ctx.me.dev_id, pipe, (m) => {
      const data = typeof m.data === "string" ? m.data : JSON.stringify(m.data);
      const when = m.time ? new Date(m.time * 1000).toLocaleTimeString() : "";
      log.prepend(h("li", {}, h("span", { class: "meta" }, `${m.pipe} · ${m.event} · ${when}`), h("span", { class: "data" }, data)));
    }, (s) => {
      status.dataset.state = s;
      status.querySelector(".text").textContent = s === "open" ? `${texts.open} on “${pipe}”` : texts[s];
    });
  };
  pipeInput.addEventListener("change", listen);
  listen();
  const card = h("section", { class: "card", "aria-labelledby": "live-title" },
    h("div", { class: "page-head" }, h("h2", { id: "live-title" }, "Live view"), status),
    h("p", { class: "muted small" }, "This page is subscribed to the pipe like your users' pages will be."),
    log);
  return { card, close: () => sub && sub.close() };
}

function sendCard(pipeInput) {
  const event = h("input", { type: "text", name: "event", value: "msg", required: true });
  const message = h("input", { type: "text", name: "message", value: "Hello, Halley!", required: true });
  const error = h("div", { class: "form-error", role: "alert" });
  const ok = h("div", { class: "form-ok", role: "status", id: "send-result" });
  const submit = h("button", { type: "submit", class: "btn", id: "send-test" }, "Send test message");
  const form = h("form", { "aria-labelledby": "send-title" },
    h("h2", { id: "send-title" }, "Send a test message"),
    h("p", { class: "muted small" }, "Published exactly as your backend would, with INSERT INTO pipes_messages."),
    error, ok,
    h("div", { class: "row" }, field("pipe", "Pipe", pipeInput), field("event", "Event", event)),
    field("message", "Message", message),
    submit);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    ok.textContent = "";
    busy(submit, error, async () => {
      const r = await api.testMessage(pipeInput.value.trim(), event.value.trim(), message.value);
      ok.textContent = `Sent. Delivered to ${r.receivers} connection${r.receivers === 1 ? "" : "s"}.`;
    });
  });
  return h("section", { class: "card" }, form);
}

export function render(ctx) {
  const pipeInput = h("input", { type: "text", name: "pipe", value: "chat", required: true });
  const live = liveCard(ctx, pipeInput);
  const creds = h("div", { class: "card", "aria-live": "polite" }, h("p", { class: "muted" }, "Loading your credentials…"));
  show(
    h("div", { class: "page-head" },
      h("div", {}, h("h1", {}, "Quick start"), h("p", {}, "Three steps from here to a message in your users' browsers."))),
    creds,
    h("div", { class: "grid grid-2" }, sendCard(pipeInput), live.card),
  );
  fillCredentials(ctx, creds);
  return live.close;
}

async function fillCredentials(ctx, card) {
  const host = location.hostname;
  const port = ctx.me.cometql_port;
  const devId = ctx.me.dev_id;
  let key = null;
  try {
    const { keys } = await api.keys();
    if (keys.length) key = (await api.revealKey(keys[0].id)).key;
  } catch (e) {
    card.replaceChildren(h("p", { class: "form-error", role: "alert" }, e.message));
    return;
  }
  const keyText = key || "(no active key: create one on the Keys page)";
  card.replaceChildren(
    h("h2", {}, "1. Your credentials"),
    h("dl", { class: "creds" },
      h("dt", {}, "dev_id"), h("dd", {}, h("span", { class: "secret", id: "dev-id" }, String(devId))),
      h("dt", {}, "Secret key"), h("dd", {}, h("span", { class: "secret", id: "secret-key" }, keyText)),
      h("dt", {}, "CometQL server"), h("dd", {}, h("span", { class: "secret" }, `${host}:${port}`)),
      h("dt", {}, "Pusher app key"), h("dd", {}, h("span", { class: "secret", id: "app-key" }, ctx.me.app_key))),
    h("p", { class: "muted small" }, "Keep the key on your server: it lets anyone publish as you. Manage keys on the Keys page."),
    ...tabs([
      ["CometQL", "cometql", [
        h("h2", {}, "2. Publish from your backend"),
        snippet("PHP (mysqli)", phpSnippet(host, port, devId, keyText), "snippet-php"),
        snippet("Command line (MariaDB or MySQL client)", cliSnippet(host, port, devId, keyText), "snippet-cli"),
        h("h2", {}, "3. Receive in your page"),
        snippet("HTML and JavaScript", jsSnippet(location.origin, location.host, devId), "snippet-js"),
      ]],
      ["Laravel", "laravel", [
        h("h2", {}, "2. Broadcast from Laravel"),
        h("p", { class: "muted small" },
          "Laravel's broadcasting, Echo and pusher-js work unchanged over the Pusher protocol (php artisan install:broadcasting, then these lines in .env)."),
        snippet(".env", laravelEnv(location, devId, ctx.me.app_key, keyText), "snippet-laravel-env"),
        h("h2", {}, "3. Listen with Echo"),
        snippet("resources/js/echo.js", echoSnippet(), "snippet-echo"),
      ]],
    ]),
  );
}
