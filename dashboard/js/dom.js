// Tiny DOM helpers: build elements without innerHTML, so text from the server is never parsed as HTML.

/** h("div", {class: "card"}, "text", child) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces the main area's content and moves focus there (screen readers announce the new view). */
export function show(...children) {
  const main = document.getElementById("main");
  main.replaceChildren(...children);
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

/** A labelled input: the label's `for` names the input's id. */
export function field(id, label, input, hint) {
  input.id = id;
  if (hint) input.setAttribute("aria-describedby", `${id}-hint`);
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("div", { class: "hint", id: `${id}-hint` }, hint) : null);
}

export function formatTime(unix) {
  if (!unix) return "never";
  return new Date(unix * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    const old = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => (button.textContent = old), 1500);
  } catch {
    button.textContent = "Select and copy";
  }
}

/** A code block with a copy button. */
export function snippet(title, code, id) {
  const pre = h("pre", { id, tabindex: "0", "aria-label": title }, h("code", {}, code));
  const btn = h("button", { type: "button", class: "btn btn-small copy", "aria-label": `Copy: ${title}` }, "Copy");
  btn.addEventListener("click", () => copy(code, btn));
  return h("div", { class: "snippet" }, h("h3", {}, title), h("div", { class: "code" }, pre, btn));
}

/** Runs `action` with the button disabled, showing its error in `errorBox`. */
export async function busy(button, errorBox, action) {
  button.disabled = true;
  errorBox.textContent = "";
  try {
    await action();
  } catch (e) {
    errorBox.textContent = e.message;
  } finally {
    button.disabled = false;
  }
}
