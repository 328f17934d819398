// Overview: the tenant's dev_id, live usage from the server's own counters and stored data against the
// tenant's quotas, refreshed every 5 seconds.

import { api } from "./api.js";
import { h, show, formatTime } from "./dom.js";

const STATS = [
  ["websocket_connections", "WebSocket connections"],
  ["cometql_sessions", "CometQL sessions"],
  ["messages_today", "Messages today"],
  ["messages_this_month", "Messages this month"],
  ["rate_limited", "Rate-limit refusals"],
];

// Stored data against the quotas (`storage` in GET /usage); past a quota a write gets ERROR 1114.
const STORAGE = [
  ["history_bytes", "History (message text)"],
  ["history_rows", "History entries"],
  ["queued_messages", "Queued private messages"],
  ["users_data", "users_data rows"],
  ["revoked_tokens", "Revoked tokens"],
];

/** 5 B, 12.5 KiB, 100 MiB: bytes the way the quota is usually set (powers of 1024). */
function formatBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i === 0 ? v : Number(v.toFixed(1)).toLocaleString()}\u00a0${units[i]}`;
}

function stat(key, label, values) {
  values[key] = h("div", { class: "value", id: `stat-${key}` }, "–");
  return h("div", { class: "stat" }, h("div", { class: "label" }, label), values[key]);
}

export function render(ctx) {
  const values = {};
  const stats = h("div", { class: "stats", "aria-live": "polite" }, STATS.map(([key, label]) => stat(key, label, values)));
  const stored = {};
  const storage = h("div", { class: "stats", "aria-live": "polite" },
    STORAGE.map(([key, label]) => stat(`storage-${key}`, label, stored)));
  const perUser = h("p", { class: "muted small" }, "");
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
    h("section", { "aria-labelledby": "storage-title" },
      h("h2", { id: "storage-title" }, "Stored data and quotas"),
      storage, perUser),
  );
  let stopped = false;
  async function refresh() {
    try {
      const u = await api.usage();
      for (const [key] of STATS) values[key].textContent = Number(u[key]).toLocaleString();
      for (const [key] of STORAGE) {
        const q = u.storage[key];
        const fmt = key === "history_bytes" ? formatBytes : (n) => Number(n).toLocaleString();
        stored[`storage-${key}`].textContent = `${fmt(q.used)} / ${fmt(q.limit)}`;
      }
      perUser.textContent = `At most ${Number(u.storage.queued_messages_per_user_limit).toLocaleString()} queued messages per user. A write past a quota is refused with ERROR 1114; deleting history, queued messages or rows frees room.`;
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
