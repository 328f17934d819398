// Keys: the secret keys the backend logs in to CometQL with. Several may be active, so a key can be
// rotated without downtime: create a new one, deploy it, revoke the old one.

import { api } from "./api.js";
import { h, show, field, busy, formatTime, copy } from "./dom.js";

export function render() {
  const error = h("div", { class: "form-error", role: "alert", id: "keys-error" });
  const body = h("tbody", {});
  const fresh = h("div", { class: "new-key", role: "status", id: "new-key" });
  const name = h("input", { type: "text", name: "name", placeholder: "production", maxlength: "64", required: true });
  const createError = h("div", { class: "form-error", role: "alert" });
  const submit = h("button", { type: "submit", class: "btn" }, "Create key");
  const form = h("form", { "aria-labelledby": "create-title" },
    h("h2", { id: "create-title" }, "Create a key"), createError,
    h("div", { class: "row" }, field("key-name", "Name", name), submit), fresh);

  async function load() {
    try {
      const { keys } = await api.keys();
      body.replaceChildren(...keys.map(row));
      if (!keys.length) {
        body.append(h("tr", {}, h("td", { colspan: "4", class: "muted" }, "No active key: your backend cannot log in. Create one below.")));
      }
    } catch (e) {
      error.textContent = e.message;
    }
  }

  function row(k) {
    const value = h("span", { class: "secret", hidden: true });
    const reveal = h("button", { type: "button", class: "btn btn-ghost btn-small" }, "Reveal");
    const copyBtn = h("button", { type: "button", class: "btn btn-ghost btn-small" }, "Copy");
    const revoke = h("button", { type: "button", class: "btn btn-danger btn-small" }, "Revoke");
    let secret = null;
    const getSecret = async () => (secret ??= (await api.revealKey(k.id)).key);
    reveal.addEventListener("click", () => busy(reveal, error, async () => {
      if (value.hidden) {
        value.textContent = await getSecret();
        value.hidden = false;
        reveal.textContent = "Hide";
      } else {
        value.hidden = true;
        reveal.textContent = "Reveal";
      }
    }));
    copyBtn.addEventListener("click", () => busy(copyBtn, error, async () => copy(await getSecret(), copyBtn)));
    revoke.addEventListener("click", () => busy(revoke, error, async () => {
      if (!confirm(`Revoke the key “${k.name}”? Backends logged in with it are disconnected at once.`)) return;
      try {
        await api.revokeKey(k.id, false);
      } catch (e) {
        if (e.code !== "last_key") throw e;
        if (!confirm("This is your last active key. Without a key your backend cannot publish until you create a new one. Revoke it anyway?")) return;
        await api.revokeKey(k.id, true);
      }
      await load();
    }));
    return h("tr", { "data-key-id": String(k.id) },
      h("td", { "data-label": "Name" }, h("strong", {}, k.name), h("div", {}, value)),
      h("td", { class: "when", "data-label": "Created" }, formatTime(k.created_at)),
      h("td", { class: "when", "data-label": "Last used" }, formatTime(k.last_used_at)),
      h("td", { "data-label": "Actions" }, h("div", { class: "actions" }, reveal, copyBtn, revoke)));
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(submit, createError, async () => {
      const k = await api.createKey(name.value);
      name.value = "";
      fresh.replaceChildren(h("strong", {}, `Key “${k.name}” created. `), "Its value: ", h("span", { class: "secret" }, k.key));
      await load();
    });
  });

  show(
    h("div", { class: "page-head" },
      h("div", {}, h("h1", {}, "Keys"),
        h("p", {}, "Your backend logs in to CometQL with your dev_id and any active key. Rotate without downtime: create, deploy, revoke the old one."))),
    h("section", { class: "card" }, error,
      h("div", { class: "table-wrap" }, h("table", { class: "stack" },
        h("caption", { class: "sr-only" }, "Active keys"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Created"),
          h("th", { scope: "col" }, "Last used"), h("th", { scope: "col" }, "Actions"))),
        body))),
    h("section", { class: "card" }, form),
  );
  load();
}
