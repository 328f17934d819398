// Classic-script entry (served as /sdk/halley.js and at the original's path /CometServerApi.js): defines the
// original's globals CometServer, cometApi, cometServerApi, _cometServerApi, plus Halley for new pages.

import { CometServer, cometApi, cometServerApi, _cometServerApi, Halley, CometServerApi } from "./index.js";

const g = globalThis;
// A page that includes the script twice must keep one instance: a second one would open a second socket
// and give the page's earlier subscriptions to an object nobody starts.
if (!(g.cometApi instanceof Object && g.cometApi.client && typeof g.CometServer === "function")) {
  g.cometApi = cometApi;
  g.CometServer = CometServer;
  g.cometServerApi = cometServerApi;
  g._cometServerApi = _cometServerApi;
  g.CometServerApi = CometServerApi;
  g.Halley = Halley;
}
