// The landing page: what Halley is, and the sign-up / log-in forms (sign-up only when the server has it open).

import { api } from "./api.js";
import { h, show, field, busy } from "./dom.js";

export function render(ctx, mode) {
  const signup = mode === "signup";
  const email = h("input", { type: "email", name: "email", autocomplete: "email", required: true });
  const password = h("input", {
    type: "password",
    name: "password",
    autocomplete: signup ? "new-password" : "current-password",
    required: true,
    minlength: signup ? "10" : false,
  });
  const error = h("div", { class: "form-error", role: "alert", id: "auth-error" });
  const submit = h("button", { type: "submit", class: "btn btn-wide" }, signup ? "Create account" : "Log in");
  const form = h("form", { novalidate: true, "aria-labelledby": "auth-title" },
    h("h2", { id: "auth-title" }, signup ? "Create your account" : "Log in to Halley"),
    error,
    field("email", "Email", email),
    field("password", "Password", password, signup ? "At least 10 characters." : null),
    submit);

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, error, async () => {
      if (signup && password.value.length < 10) {
        throw new Error("The password must be at least 10 characters long.");
      }
      const me = signup
        ? await api.signUp(email.value, password.value)
        : await api.logIn(email.value, password.value);
      ctx.loggedIn(me, signup ? "quickstart" : "overview");
    });
  });

  const tabs = h("nav", { class: "tabs", "aria-label": "Account" },
    h("a", { href: "#/signup", "aria-current": signup ? "page" : false }, "Sign up"),
    h("a", { href: "#/login", "aria-current": signup ? false : "page" }, "Log in"));

  const card = h("div", { class: "card" }, tabs, form);
  // An operator may close sign-up ([dashboard] signup = "closed"): say so instead of offering a form
  // whose every submission would be refused.
  api.signUpStatus().then((status) => {
    if (status.signup !== "closed" || !card.isConnected) return;
    tabs.firstChild.remove();
    if (signup) {
      form.replaceWith(h("div", { id: "signup-closed" },
        h("h2", {}, "Sign-up is closed"),
        h("p", { role: "status" }, status.message),
        h("a", { href: "#/login", class: "btn btn-wide" }, "Log in")));
    }
  }).catch(() => {});

  show(h("section", { class: "hero" },
    h("div", {},
      h("h1", {}, "Real-time push for your app, in a minute"),
      h("p", { class: "lead" },
        "Halley delivers messages from your backend to your users' browsers over WebSocket. ",
        "Your PHP publishes with one SQL statement; your page receives it instantly."),
      h("ol", { class: "steps" },
        h("li", {}, "Create an account: you get a dev_id and a secret key."),
        h("li", {}, "Paste the PHP and JavaScript snippets into your app."),
        h("li", {}, "Send a message and watch it arrive, right here.")),
      h("p", { class: "muted small" },
        "Already on comet-server? Change the host name and credentials; your code stays the same.")),
    card));
  email.focus();
}
