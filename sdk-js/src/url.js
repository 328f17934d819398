// The connect URL of the comet-server protocol, byte for byte as the original 4.08 API builds it:
//   ws[s]://<node>/ws/sesion=<user_key>&myid=<user_id>&devid=<dev_id>&v=4.08&uuid=<32 chars>&api=js
// (`sesion` is the original's spelling and the server reads it by that name).

import { API_VERSION } from "./version.js";

/**
 * Characters of a user key that are sent as they are. Hashes use [0-9A-Za-z=+/_] and JWTs [A-Za-z0-9-_.], so a
 * real key is never changed; anything else (`&`, `#`, `%`, spaces...) would cut or corrupt the URL and is
 * percent-encoded, which the server decodes.
 */
const KEY_SAFE = /[A-Za-z0-9\-._~=+/:]/;

export function encodeKey(key) {
  let out = "";
  for (const ch of String(key)) {
    out += KEY_SAFE.test(ch) ? ch : encodeURIComponent(ch);
  }
  return out;
}

/** A node as users write it: "host:port", "host/prefix", or by mistake with a scheme or a trailing slash. */
export function normalizeNode(node) {
  return String(node).trim().replace(/^[a-z][a-z0-9+.-]*:\/\//i, "").replace(/\/+$/, "");
}

/** The node used when the page gives none: the host that served the page (and so, normally, this script). */
export function defaultNode(location) {
  return location && location.host ? location.host : "";
}

/** wss when forced by the `wss` option, else when the page itself is https. */
export function useSecure(wssOption, location) {
  if (wssOption === true) return true;
  if (wssOption === false) return false;
  return Boolean(location && location.protocol === "https:");
}

/**
 * @param {{node: string, secure: boolean, userKey?: string, userId?: string|number, devId: string|number,
 *          uuid: string}} p
 */
export function buildUrl(p) {
  const key = p.userKey === undefined || p.userKey === null ? "" : encodeKey(p.userKey);
  const userId = p.userId === undefined || p.userId === null || p.userId === "" ? 0 : p.userId;
  return (
    (p.secure ? "wss" : "ws") +
    "://" +
    normalizeNode(p.node) +
    "/ws/sesion=" +
    key +
    "&myid=" +
    encodeURIComponent(String(userId)) +
    "&devid=" +
    encodeURIComponent(String(p.devId)) +
    "&v=" +
    API_VERSION +
    "&uuid=" +
    p.uuid +
    "&api=js"
  );
}

/**
 * Which node of a list this client connects to. The original opened one socket per node and received every
 * message once per node; Halley nodes share their messages through the cluster, so one socket is enough. The
 * choice is stable per user (user_id modulo the count, as the original's `roundrobin`) and moves on to the
 * next node after a failed attempt.
 */
export function pickNode(nodes, userId, failures) {
  if (nodes.length === 0) return "";
  const id = Number(userId);
  const start = Number.isFinite(id) && id > 0 ? id % nodes.length : 0;
  return nodes[(start + failures) % nodes.length];
}
