// Turning a message's `data` string into what the page's callback receives.
//
// Halley delivers message text exactly as it was published, so a JSON text parses on the first try. Texts
// that were stored escaped for the original server (PHP's addslashes, or mysql-escaped web_pipe_send text
// from comet-server) still parse through the original API's fallbacks. Unlike the original, a text that is
// not JSON under any reading is handed over unchanged: the original passed it through stripslashes twice,
// which ate backslashes from plain text.

/** PHP's stripslashes, as the original API carried it (phpjs): `\x` -> `x`, `\\` -> `\`, `\0` -> NUL. */
export function stripslashes(str) {
  return String(str).replace(/\\(.?)/g, (_, c) => {
    if (c === "\\") return "\\";
    if (c === "0") return "\u0000";
    return c;
  });
}

const unquote = (s) => s.replace(/\\'/g, "'");

/** Readings tried in order; the first that is valid JSON wins. */
function readings(text) {
  const once = stripslashes(text);
  const twice = stripslashes(once);
  return [text, unquote(text), once, unquote(once), twice, unquote(twice)];
}

/** `data` as the callback sees it: parsed JSON when some reading is JSON, else the text as it came. */
export function decodeData(data) {
  if (typeof data !== "string") return data;
  let previous = null;
  for (const candidate of readings(data)) {
    if (candidate === previous) continue;
    previous = candidate;
    try {
      return JSON.parse(candidate);
    } catch {
      // Not JSON under this reading: try the next one.
    }
  }
  return data;
}
