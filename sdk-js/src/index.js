// ES module entry (served as /sdk/halley.mjs). Two styles share one implementation:
//   import { CometServer } from "/sdk/halley.mjs";  CometServer().start({dev_id: 1, ...})   (comet-server pages)
//   import { Halley } from "/sdk/halley.mjs";       new Halley({devId: 1, ...})             (new pages)

import { CometServerApi } from "./compat.js";

export { Halley } from "./modern.js";
export { CometServerApi } from "./compat.js";
export { API_VERSION, SDK_VERSION } from "./version.js";

/** The page-wide instance that CometServer() returns, as in the original. */
export const cometApi = new CometServerApi();

/** The original's factory: always the same instance. */
export function CometServer() {
  return cometApi;
}

/** The original's constructor names: `new cometServerApi()` makes an independent instance. */
export function cometServerApi(opt) {
  return new CometServerApi(opt);
}
export const _cometServerApi = cometServerApi;
