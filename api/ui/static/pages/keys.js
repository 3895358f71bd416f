// API keys of the tenant: mint (shown once), list, revoke.
import { announce, api, confirmAction, errorSlot, field, formatDate, guarded, h, session } from "/ui/lib.js";

export async function render(main) {
  document.title = "API keys · Ragline";
  const slot = errorSlot();
  const tbody = h("tbody");
  const minted = h("div", { "aria-live": "polite" });

  async function load() {
    const keys = await api("GET", "/system/tokens");
    tbody.replaceChildren(...keys.map((key) => {
      const rowSlot = errorSlot();
      const revoke = h("button", { type: "button", class: "small danger", text: "Revoke", "aria-label": `Revoke key ${key.prefix}…` });
      revoke.onclick = () => guarded(rowSlot, revoke, async () => {
        const warning = key.current ? " This is the key you are signed in with: you will be signed out." : "";
        if (!(await confirmAction("Revoke this key?", `Scripts using ${key.prefix}… will stop working at once.${warning}`, "Revoke"))) return;
        await api("DELETE", `/system/tokens/${key.id}`);
        announce(`Key ${key.prefix}… revoked.`);
        if (key.current) { session.clear(); location.hash = "#/datasets"; location.reload(); return; }
        await load();
      });
      return h("tr", { dataset: { id: key.id } },
        h("td", { class: "mono", text: `${key.prefix}…` }),
        h("td", { text: key.name || "—" }),
        h("td", { text: formatDate(key.create_time) }),
        h("td", {}, key.current ? h("span", { class: "badge DONE", text: "this session" }) : ""),
        h("td", {}, revoke, rowSlot));
    }));
  }

  const label = h("input", { type: "text", maxlength: 128, placeholder: "e.g. nightly import" });
  const mint = h("button", { type: "submit", class: "primary", text: "Create key" });
  const mintSlot = errorSlot();
  const form = h("form", { class: "panel" }, field("Label", label, "What the key is for; shown in the list below."), mintSlot,
    h("div", { class: "actions" }, mint));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(mintSlot, mint, async () => {
      const issued = await api("POST", "/system/tokens", { body: { name: label.value.trim() } });
      label.value = "";
      const shown = h("input", { type: "text", readonly: true, class: "key-once", id: "new-key", value: issued.token });
      const copy = h("button", { type: "button", text: "Copy" });
      copy.onclick = async () => {
        try { await navigator.clipboard.writeText(issued.token); announce("Key copied."); } catch { shown.select(); announce("Select the key and copy it."); }
      };
      minted.replaceChildren(h("div", { class: "notice" },
        h("p", {}, h("strong", { text: "New key — copy it now: " }), "Ragline stores only its hash and will not show it again."),
        h("label", { for: "new-key", text: "New API key" }), shown, h("div", { class: "actions" }, copy)));
      shown.select();
      await load();
    });
  });

  main.append(h("h1", { text: "API keys" }),
    h("p", { class: "muted", text: "Keys of this tenant. Every key sees the same datasets and chats; revoke one to shut out whoever holds it." }),
    h("h2", { text: "Create a key" }), form, minted, h("h2", { text: "Keys" }), slot,
    h("div", { class: "table-wrap" }, h("table", { id: "keys" },
      h("thead", {}, h("tr", {}, ["Key", "Label", "Created", "In use", "Actions"].map((text) => h("th", { scope: "col", text })))), tbody)));
  await guarded(slot, null, load);
}
