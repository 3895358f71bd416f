// Ragline UI entry: sign-in, navigation and the hash router. Pages live in /ui/pages/.
import { apiEnvelope, errorSlot, guarded, h, onKeyRefused, session } from "/ui/lib.js";
import * as chats from "/ui/pages/chats.js";
import * as chunks from "/ui/pages/chunks.js";
import * as datasets from "/ui/pages/datasets.js";
import * as documents from "/ui/pages/documents.js";
import * as keys from "/ui/pages/keys.js";
import * as retrieval from "/ui/pages/retrieval.js";
import * as usage from "/ui/pages/usage.js";

const ID = "([0-9a-zA-Z_-]+)";
const ROUTES = [
  [new RegExp(`^/datasets$`), datasets, "datasets"],
  [new RegExp(`^/datasets/${ID}$`), documents, "datasets"],
  [new RegExp(`^/datasets/${ID}/documents/${ID}$`), chunks, "datasets"],
  [new RegExp(`^/retrieval$`), retrieval, "retrieval"],
  [new RegExp(`^/chats(?:/${ID})?(?:/${ID})?$`), chats, "chats"],
  [new RegExp(`^/usage$`), usage, "usage"],
  [new RegExp(`^/keys$`), keys, "keys"],
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let leavePage = null; // the current page's cleanup (stop polling, abort a stream)
let refusedMessage = "";

function currentPath() {
  return (location.hash.slice(1).split("?")[0]) || "/datasets";
}

let routing = 0; // which navigation is current: a slower, older one must not draw over it

async function route() {
  const mine = ++routing;
  if (leavePage) { try { leavePage(); } catch { /* a page's cleanup must not block navigation */ } }
  leavePage = null;
  if (!session.key()) { renderSignIn(); return; }
  nav.hidden = false;
  const path = currentPath();
  const match = ROUTES.map(([pattern, page, section]) => [path.match(pattern), page, section]).find(([m]) => m);
  if (!match) {
    main.replaceChildren(h("h1", { text: "Page not found" }),
      h("p", {}, "Nothing lives at this address. ", h("a", { href: "#/datasets", text: "Go to the datasets." })));
    return;
  }
  const [found, page, section] = match;
  for (const link of nav.querySelectorAll("a[data-section]")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  main.setAttribute("aria-busy", "true");
  const view = h("div", { class: "view" });
  let cleanup = null;
  try {
    cleanup = (await page.render(view, found.slice(1).filter(Boolean))) || null;
  } catch (error) {
    view.append(h("p", { class: "error", role: "alert", text: error.message || String(error) }));
  }
  if (mine !== routing || !session.key()) { // navigated away (or signed out) meanwhile
    if (cleanup) cleanup();
    return;
  }
  leavePage = cleanup;
  main.removeAttribute("aria-busy");
  main.replaceChildren(view);
  const focusTarget = view.querySelector("[data-autofocus]") || view.querySelector("h1");
  if (focusTarget) { focusTarget.tabIndex = focusTarget.tabIndex >= 0 ? focusTarget.tabIndex : -1; focusTarget.focus(); }
}

function renderSignIn() {
  nav.hidden = true;
  main.removeAttribute("aria-busy");
  document.title = "Sign in · Ragline";
  const input = h("input", { type: "password", id: "api-key", name: "api-key", autocomplete: "off", required: true, spellcheck: "false" });
  const slot = errorSlot();
  if (refusedMessage) slot.show({ message: `Ragline refused this key: ${refusedMessage} Sign in with a valid API key.` });
  const submit = h("button", { type: "submit", class: "primary", text: "Sign in" });
  const form = h("form", { class: "panel", "aria-describedby": "signin-help" },
    h("label", { for: "api-key", text: "API key" }), input,
    h("p", { class: "hint", id: "signin-help" },
      "Ragline printed a key the first time it started. Another one comes from ",
      h("code", { text: "ragline token create --tenant NAME" }),
      ". The key stays in this browser tab only (session storage) and is sent as the Bearer header."),
    slot, h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) { slot.show({ message: "Enter an API key." }); input.focus(); return; }
    await guarded(slot, submit, async () => {
      try {
        await apiEnvelope("GET", "/datasets", { query: { page: 1, page_size: 1 }, key });
      } catch (error) {
        input.setAttribute("aria-invalid", "true");
        input.select();
        throw Object.assign(error, { message: `Ragline refused this key: ${error.message}` });
      }
      session.save(key);
      refusedMessage = "";
      if (!location.hash || location.hash === "#/signin") location.hash = "#/datasets"; else route();
    });
  });
  main.replaceChildren(h("h1", { text: "Sign in to Ragline" }), form);
  input.focus();
}

onKeyRefused((message) => {
  session.clear();
  refusedMessage = message;
  route();
});

document.getElementById("sign-out").addEventListener("click", () => {
  session.clear();
  refusedMessage = "";
  route();
});

window.addEventListener("hashchange", route);
route();
