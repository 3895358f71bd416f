// Shared helpers of the Ragline UI: the API client, DOM building, errors, dialogs, formatting.
// The UI is a client of Ragline's public HTTP API only; every call goes through `api` below.

const KEY_NAME = "ragline.apiKey";

export class ApiError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

export const session = {
  key: () => sessionStorage.getItem(KEY_NAME) || "",
  save: (key) => sessionStorage.setItem(KEY_NAME, key),
  clear: () => sessionStorage.removeItem(KEY_NAME),
};

const signOutListeners = [];
/** Called with the server's message when a request is refused for its key (revoked, wrong). */
export function onKeyRefused(listener) { signOutListeners.push(listener); }

export function authHeaders(key = session.key()) {
  return { Authorization: `Bearer ${key}` };
}

export function apiUrl(path, query) {
  const url = new URL(`/api/v1${path}`, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  return url;
}

/** Reads Ragline's envelope from a response; anything else becomes an envelope with its status. */
export async function readEnvelope(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (body && typeof body === "object" && "code" in body) return body;
    if (body && body.error) return { code: response.status, message: body.error.message || String(body.error) };
  } catch { /* not JSON: fall through */ }
  const snippet = text.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim().slice(0, 200);
  return { code: response.status || -1, message: `HTTP ${response.status}${snippet ? `: ${snippet}` : ""}` };
}

/** One API call; resolves to the whole envelope ({code: 0, data, ...}) or throws ApiError. */
export async function apiEnvelope(method, path, { body, query, signal, key } = {}) {
  const init = { method, headers: authHeaders(key), signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(apiUrl(path, query), init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(`Ragline did not answer (${error.message}). Is the server running?`, -1);
  }
  const envelope = await readEnvelope(response);
  if (envelope.code !== 0) {
    const refused = envelope.code === 109 || response.status === 401;
    if (refused && key === undefined) signOutListeners.forEach((listener) => listener(envelope.message));
    throw new ApiError(envelope.message || `Request failed with code ${envelope.code}.`, envelope.code);
  }
  return envelope;
}

/** One API call; resolves to the envelope's `data`. */
export async function api(method, path, options) {
  return (await apiEnvelope(method, path, options)).data;
}

/** Builds an element. attrs: `class`, `text`, `on<event>` handlers, `dataset`, booleans, others. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else if (name === "value") node.value = value;
    else node.setAttribute(name, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A place to show an error where it happened; `show(error)` writes the server's message. */
export function errorSlot() {
  const node = h("p", { class: "error", role: "alert" });
  node.show = (error) => { node.textContent = error ? (error.message || String(error)) : ""; };
  node.clear = () => { node.textContent = ""; };
  return node;
}

/** Runs `action` with `button` disabled; an error lands in `slot` (nothing fails silently). */
export async function guarded(slot, button, action) {
  slot?.clear();
  if (button) button.disabled = true;
  try {
    return await action();
  } catch (error) {
    if (error.name === "AbortError") return undefined;
    if (slot) slot.show(error); else announce(error.message);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

/** Tells screen readers (and the polite status line) what just happened. */
export function announce(message) {
  const status = document.getElementById("status");
  status.textContent = "";
  setTimeout(() => { status.textContent = message; }, 30);
}

/** A modal yes/no question; resolves true when the person confirms. */
export function confirmAction(title, text, confirmLabel = "Delete") {
  const dialog = document.getElementById("confirm");
  dialog.querySelector("#confirm-title").textContent = title;
  dialog.querySelector("#confirm-text").textContent = text;
  dialog.querySelector("#confirm-ok").textContent = confirmLabel;
  dialog.returnValue = "";
  dialog.showModal();
  dialog.querySelector("button[value=cancel]").focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

/** A modal holding `content`; returns {dialog, close}. Escape closes it; it is removed when closed. */
export function openDialog(title, content) {
  const heading = h("h2", { id: `dlg-${Math.random().toString(36).slice(2)}`, text: title });
  const close = h("button", { type: "button", class: "small", text: "Close", onclick: () => dialog.close() });
  const dialog = h("dialog", { "aria-labelledby": heading.id }, h("div", { class: "toolbar" }, heading, close), content);
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return { dialog, close: () => dialog.close() };
}

export function field(labelText, input, hint) {
  input.id ||= `f-${Math.random().toString(36).slice(2)}`;
  const hintNode = hint ? h("p", { class: "hint", id: `${input.id}-hint`, text: hint }) : null;
  if (hintNode) input.setAttribute("aria-describedby", hintNode.id);
  return h("div", {}, h("label", { for: input.id, text: labelText }), input, hintNode);
}

export function formatDate(ms) {
  if (!ms) return "";
  return new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function formatBytes(size) {
  if (!Number.isFinite(size)) return "";
  const units = ["B", "KB", "MB", "GB"];
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

export function formatNumber(value, digits = 0) {
  return Number(value || 0).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function percent(value) {
  return `${Math.round(Math.max(0, Math.min(1, Number(value) || 0)) * 100)}%`;
}

/** Every page of a list route (`data` an array, or `{[listKey]: [...]}`), up to `limit` items. */
export async function listAll(path, query = {}, listKey = null, limit = 1000) {
  const items = [];
  for (let page = 1; items.length < limit; page += 1) {
    const data = await api("GET", path, { query: { ...query, page, page_size: 100 } });
    const batch = listKey ? data[listKey] : data;
    items.push(...batch);
    if (batch.length < 100) break;
  }
  return items;
}

export const hashQuery = () => new URLSearchParams(location.hash.split("?")[1] || "");
