// Settings: the origins allowed to open WebSocket connections, whether CometQL logins must use TLS, and the
// account's password.

import { api } from "./api.js";
import { h, show, field, busy } from "./dom.js";

function originsCard() {
  const text = h("textarea", { name: "origins", rows: "4", placeholder: "https://app.example.com", spellcheck: "false" });
  const error = h("div", { class: "form-error", role: "alert" });
  const ok = h("div", { class: "form-ok", role: "status" });
  const submit = h("button", { type: "submit", class: "btn" }, "Save origins");
  const form = h("form", { "aria-labelledby": "origins-title" },
    h("h2", { id: "origins-title" }, "Allowed origins"),
    h("p", { class: "muted small" }, "Pages from these origins may connect to your dev_id over WebSocket; others get HTTP 403. Leave empty to allow any origin."),
    error, ok,
    field("origins", "One origin per line", text, "Scheme, host and port only, like https://app.example.com"),
    submit);
  // Editable only once loaded, so a late answer never overwrites what the owner typed.
  text.disabled = true;
  submit.disabled = true;
  api.origins().then(
    (r) => {
      text.value = r.origins.join("\n");
      text.disabled = false;
      submit.disabled = false;
    },
    (e) => (error.textContent = e.message),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    ok.textContent = "";
    busy(submit, error, async () => {
      const r = await api.setOrigins(text.value.split("\n").map((s) => s.trim()).filter(Boolean));
      text.value = r.origins.join("\n");
      ok.textContent = r.origins.length ? "Saved. Only these origins may connect." : "Saved. Any origin may connect.";
    });
  });
  return h("section", { class: "card" }, form);
}

function securityCard() {
  const box = h("input", { type: "checkbox", name: "require_tls" });
  const error = h("div", { class: "form-error", role: "alert" });
  const ok = h("div", { class: "form-ok", role: "status" });
  const warn = h("p", { class: "form-error", hidden: true },
    "This server has no TLS certificate: with this on, every CometQL login of your dev_id would be refused.");
  const submit = h("button", { type: "submit", class: "btn" }, "Save");
  const form = h("form", { "aria-labelledby": "security-title" },
    h("h2", { id: "security-title" }, "Require TLS for CometQL"),
    h("p", { class: "muted small" },
      "When on, a MySQL client must connect with SSL (mysqli MYSQLI_CLIENT_SSL, PDO MYSQL_ATTR_SSL_CA, mariadb --ssl): " +
      "a plaintext login with a valid key is refused with ERROR 3159. Keeps your key's scramble and your messages off the network in clear."),
    error, ok, warn,
    h("div", { class: "field" }, h("label", { for: "require-tls" }, box, " Refuse CometQL logins without TLS")),
    submit);
  box.id = "require-tls";
  box.disabled = true;
  submit.disabled = true;
  api.security().then(
    (r) => {
      box.checked = r.require_tls;
      warn.hidden = r.tls_offered;
      box.disabled = false;
      submit.disabled = false;
    },
    (e) => (error.textContent = e.message),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    ok.textContent = "";
    busy(submit, error, async () => {
      const r = await api.setSecurity(box.checked);
      box.checked = r.require_tls;
      ok.textContent = r.require_tls ? "Saved. CometQL logins must use TLS." : "Saved. Plaintext CometQL logins are allowed.";
    });
  });
  return h("section", { class: "card" }, form);
}

function pusherCard() {
  const box = h("input", { type: "checkbox", name: "client_events" });
  const error = h("div", { class: "form-error", role: "alert" });
  const ok = h("div", { class: "form-ok", role: "status" });
  const submit = h("button", { type: "submit", class: "btn" }, "Save client events");
  const form = h("form", { "aria-labelledby": "pusher-title" },
    h("h2", { id: "pusher-title" }, "Pusher client events"),
    h("p", { class: "muted small" },
      "When on, Pusher and Laravel Echo clients may send client-* events (Echo's whisper) to the other members of " +
      "private and presence channels, 10 a second per connection, from your publish budget."),
    error, ok,
    h("div", { class: "field" }, h("label", { for: "client-events" }, box, " Allow client events")),
    submit);
  box.id = "client-events";
  box.disabled = true;
  submit.disabled = true;
  api.pusher().then(
    (r) => {
      box.checked = r.client_events;
      box.disabled = false;
      submit.disabled = false;
    },
    (e) => (error.textContent = e.message),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    ok.textContent = "";
    busy(submit, error, async () => {
      const r = await api.setPusher(box.checked);
      box.checked = r.client_events;
      ok.textContent = r.client_events ? "Saved. Client events are relayed." : "Saved. Client events are refused.";
    });
  });
  return h("section", { class: "card" }, form);
}

function passwordCard(ctx) {
  const current = h("input", { type: "password", autocomplete: "current-password", required: true });
  const next = h("input", { type: "password", autocomplete: "new-password", minlength: "10", required: true });
  const again = h("input", { type: "password", autocomplete: "new-password", required: true });
  const error = h("div", { class: "form-error", role: "alert" });
  const ok = h("div", { class: "form-ok", role: "status" });
  const submit = h("button", { type: "submit", class: "btn" }, "Change password");
  const form = h("form", { "aria-labelledby": "password-title", novalidate: true },
    h("h2", { id: "password-title" }, "Change password"),
    error, ok,
    field("current-password", "Current password", current),
    field("new-password", "New password", next, "At least 10 characters. Other sessions are logged out."),
    field("new-password-again", "New password again", again),
    submit);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    ok.textContent = "";
    busy(submit, error, async () => {
      if (next.value !== again.value) throw new Error("The two new passwords differ.");
      const me = await api.changePassword(current.value, next.value);
      ctx.setMe(me);
      form.reset();
      ok.textContent = "Password changed.";
    });
  });
  return h("section", { class: "card" }, form);
}

export function render(ctx) {
  show(
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Settings"), h("p", {}, ctx.me.email))),
    h("div", { class: "grid grid-2" }, originsCard(), securityCard(), pusherCard(), passwordCard(ctx)),
  );
}
