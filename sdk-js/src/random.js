// Random identifiers. The alphabets are the original API's, so that the uuid a page already keeps in
// localStorage (`comet_server_uuid`) stays valid and the server sees the same kind of values as before.

export const UUID_ALPHABET = "qwertyuiopasdfghjklzxcvbnm1234567890QWERTYUIOPASDFGHJKLZXCVBNM_-";
export const TOKEN_ALPHABET = "qwertyuiopasdfghjklzxcvbnm1234567890QWERTYUIOPASDFGHJKLZXCVBNM";

/** `length` characters drawn from `alphabet`; `random` returns a float in [0, 1) (injectable for tests). */
export function randomString(length, alphabet = TOKEN_ALPHABET, random = defaultRandom) {
  let out = "";
  for (let i = 0; i < length; i++) {
    out += alphabet[Math.floor(random() * alphabet.length) % alphabet.length];
  }
  return out;
}

/** crypto.getRandomValues where available: uuids and markers must not collide between tabs. */
export function defaultRandom() {
  const c = globalThis.crypto;
  if (c && typeof c.getRandomValues === "function") {
    const buf = new Uint32Array(1);
    c.getRandomValues(buf);
    return buf[0] / 4294967296;
  }
  return Math.random();
}
