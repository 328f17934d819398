// Overview: the tenant's dev_id and live usage from the server's own counters, refreshed every 5 seconds.

import { api } from "./api.js";
import { h, show, formatTime } from "./dom.js";

const STATS = [
  ["websocket_connections", "WebSocket connections"],
  ["cometql_sessions", "CometQL sessions"],
  ["messages_today", "Messages today"],
  ["messages_this_month", "Messages this month"],
  ["rate_limited", "Rate-limit refusals"],
];

export function render(ctx) {
  const values = {};
  const stats = h("div", { class: "stats", "aria-live": "polite" }, STATS.map(([key, label]) => {
    values[key] = h("div", { class: "value", id: `stat-${key}` }, "–");
    return h("div", { class: "stat" }, h("div", { class: "label" }, label), values[key]);
  }));
  const error = h("div", { class: "form-error", role: "alert" });
  const updated = h("p", { class: "muted small" }, "");
  show(
    h("div", { class: "page-head" },
      h("div", {}, h("h1", {}, "Overview"), h("p", {}, `Account ${ctx.me.email}, created ${formatTime(ctx.me.created_at)}.`))),
    h("section", { class: "card" },
      h("h2", {}, "Your dev_id"),
      h("p", {}, h("span", { class: "big-id", id: "overview-dev-id" }, String(ctx.me.dev_id)),
        h("span", { class: "muted" }, "Your CometQL user name, and the dev_id your pages connect with.")),
    ),
    h("section", { "aria-labelledby": "usage-title" },
      h("h2", { id: "usage-title" }, "Live usage"),
      error, stats, updated),
  );
  let stopped = false;
  async function refresh() {
    try {
      const u = await api.usage();
      for (const [key] of STATS) values[key].textContent = Number(u[key]).toLocaleString();
      error.textContent = "";
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}. Messages are counted in UTC days and months.`;
    } catch (e) {
      if (!stopped) error.textContent = e.message;
    }
  }
  refresh();
  const timer = setInterval(refresh, 5000);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
