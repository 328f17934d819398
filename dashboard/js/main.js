// The dashboard's shell: who is logged in, which view is shown (from the URL's #/route), the banner for
// errors that are not about one form (expired session, server unreachable).

import { api, setSession, whenExpired } from "./api.js";
import { h, show } from "./dom.js";
import * as auth from "./auth.js";
import * as overview from "./overview.js";
import * as keys from "./keys.js";
import * as quickstart from "./quickstart.js";
import * as settings from "./settings.js";

const VIEWS = { quickstart, overview, keys, settings };
const state = { me: null, cleanup: null };

function banner(text) {
  const el = document.getElementById("banner");
  el.textContent = text || "";
  el.hidden = !text;
}

function setMe(me) {
  state.me = me;
  setSession(me);
  document.getElementById("nav").hidden = !me;
  document.getElementById("who").hidden = !me;
  document.getElementById("who-email").textContent = me ? me.email : "";
}

function go(route) {
  if (location.hash === `#/${route}`) render();
  else location.hash = `#/${route}`;
}

function render() {
  if (state.cleanup) state.cleanup();
  state.cleanup = null;
  const route = location.hash.replace(/^#\/?/, "");
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.route === route) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const ctx = { me: state.me, go, banner, loggedIn, setMe };
  if (!state.me) {
    if (VIEWS[route]) banner("Please log in to see this page.");
    state.cleanup = auth.render(ctx, route === "login" ? "login" : "signup");
    document.title = route === "login" ? "Log in · Halley" : "Halley: real-time push for your app";
    return;
  }
  const view = VIEWS[route] ? route : "quickstart";
  if (view !== route) return go(view);
  document.title = `${view[0].toUpperCase()}${view.slice(1).replace("start", " start")} · Halley`;
  state.cleanup = VIEWS[view].render(ctx) || null;
}

/** After sign-up or log-in. */
function loggedIn(me, route) {
  banner("");
  setMe(me);
  go(route);
}

whenExpired((err) => {
  setMe(null);
  banner(err.code === "session_expired" ? err.message : "You have been logged out. Please log in again.");
  go("login");
});

async function boot() {
  try {
    setMe(await api.me());
  } catch (e) {
    setMe(null);
    if (e.code === "session_expired") banner(e.message);
    else if (e.code === "unreachable") {
      banner(e.message);
      show(h("div", { class: "card" }, h("p", {}, "The dashboard could not load."),
        h("button", { type: "button", class: "btn", onclick: () => boot() }, "Try again")));
      return;
    } else if (e.code !== "not_logged_in") banner(e.message);
  }
  render();
}

document.getElementById("logout").addEventListener("click", async () => {
  try {
    await api.logOut();
  } catch {
    // Logged out locally either way; the cookie expires by itself.
  }
  setMe(null);
  banner("");
  go("login");
});

window.addEventListener("hashchange", render);
boot();
