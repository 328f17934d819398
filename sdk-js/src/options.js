// Start options, in the original's names (dev_id, user_id, user_key, node / nodes, wss, uuid) or the modern
// ones (devId, userId, userKey). Options given to start()/restart() are merged into those given before, as the
// original does, so restart({user_key}) keeps the node and dev_id.

import { defaultNode, normalizeNode } from "./url.js";

const ALIASES = { devId: "dev_id", userId: "user_id", userKey: "user_key" };

/** Merges `given` into `current` (both in the original's names). */
export function mergeOptions(current, given) {
  const out = { ...current };
  if (!given || typeof given !== "object") return out;
  for (const [k, v] of Object.entries(given)) out[ALIASES[k] || k] = v;
  return out;
}

/** The node list: `nodes`, else `node` (a string or an array), else the host that served the page. */
export function nodeList(options, location) {
  let nodes = options.nodes !== undefined ? options.nodes : options.node;
  if (nodes === undefined || nodes === null || nodes === "") nodes = options.nodeArray;
  if (nodes === undefined || nodes === null || nodes === "") nodes = [defaultNode(location)];
  if (!Array.isArray(nodes)) nodes = [nodes];
  return nodes.map(normalizeNode).filter((n) => n !== "");
}

/** Why these options cannot connect, or null. */
export function optionsError(options, nodes) {
  const dev = Number(options.dev_id);
  if (!Number.isInteger(dev) || dev <= 0) {
    return `dev_id must be your tenant's number (got ${JSON.stringify(options.dev_id)}); see your Halley dashboard.`;
  }
  if (nodes.length === 0) return "no node to connect to: pass the `node` option (host:port of the Halley server).";
  return null;
}

/** Tabs share a socket only when everything in its URL but the uuid is the same. */
export function groupKey(options, nodes) {
  return [nodes.join(","), options.dev_id, options.user_id ?? "", hash(String(options.user_key ?? ""))].join("|");
}

/** FNV-1a, so that the key (a lock and channel name) does not carry the user key itself. */
export function hash(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(36);
}
