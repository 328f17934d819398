// Compiled, not run, by `npm run check-types` (tsc --strict): the documented uses of dist/halley.d.ts must
// type-check, so that the declarations stay in step with the README.
import { CometServer, Halley, cometServerApi, cometApi, CometMessage, TrackedUser } from "../../dist/halley";

const api = CometServer();
api.start({ dev_id: 1, user_id: 5, user_key: "k", node: "h" }, () => {});
api.start({ devId: 1, nodes: ["a", "b"], wss: true, share: false, backoff: { baseMs: 100 } });
const id = api.subscription("chat", (m: CometMessage<{ text: string }>) => m.data.text);
if (id) api.unsubscription(id);
api.subscription((m) => m.server_info.pipe);
api.unsubscriptionAll();
api.web_pipe_send("web_x.e", { a: 1 });
api.web_pipe_send("web_x", "e", "text");
api.multi_web_pipe_send("web_x", "e", { a: 1 }, 3, 1000);
api.get_pipe_log("chat", (m) => m.server_info.history);
api.count_users_in_pipe("web_x", (m) => m.data.user_in_pipe);
api.getTrackPipeUsers("track_x", (m) => m.data.map((u: TrackedUser) => u.uuid));
api.getUserData(5, (m) => m.data.user_data);
api.onAuthSuccess(() => api.isAuthorized() === true);
api.onAuthFalill(() => undefined);
const flags: Array<boolean | undefined> = [api.isMaster(), api.isConnected(), api.isAuthorized()];
const ids: Array<string | number | undefined> = [api.getUserId(), api.getUserKey(), api.getRealUserKey(), api.getDevId()];
const strings: string[] = [api.getUUID(), api.getTabUUID(), api.version];
api.setLogLevel(api.getLogLevel() + 1);
api.restart({ user_key: "other" });
api.stop();
new cometServerApi().isMaster();
cometApi.getUUID();
const offRecovery: () => void = cometApi.onRecovery("web_x", (recovered: boolean, p) => void (recovered && p.epoch));
offRecovery();
cometApi.getPosition("web_x");

const h = new Halley({ devId: 1 });
h.publish("web_x", "e", 1).then((r) => r.number_messages);
h.countUsers("web_x").then((n: number) => n);
h.trackUsers("track_x", { timeoutMs: 500 }).then((u) => u[0].user_id);
h.userData(5).then((s: string) => s.length);
const offs: Array<() => void> = [
  h.on("chat", (m) => m.data),
  h.history("chat", (m) => m.server_info.history),
  h.onAuth((ok: boolean) => ok),
  h.onStatus((up: boolean) => up),
  h.onRecovery("chat", (recovered: boolean, position) => recovered || position.offset > 0),
];
const where: number | undefined = h.getPosition("chat")?.offset;
offs.forEach((off) => off());
const state: Array<boolean | undefined> = [h.authorized, h.connected, h.leader];
h.close();
export { flags, ids, strings, state, where };
