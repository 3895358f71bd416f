// A document's chunks: search, edit, enable/disable, delete; a cited chunk (?chunk=<id>) first.
import { ApiError, announce, api, confirmAction, errorSlot, field, guarded, h, hashQuery } from "/ui/lib.js";
import { downloadDocument } from "/ui/pages/documents.js";

const PAGE_SIZE = 20;

export async function render(main, [datasetId, docId]) {
  const [dataset] = await api("GET", "/datasets", { query: { id: datasetId } });
  if (!dataset) throw new ApiError("This dataset does not exist (or is not yours).", 102);
  const docs = await api("GET", `/datasets/${datasetId}/documents`, { query: { id: docId } });
  const doc = docs.docs[0];
  if (!doc) throw new ApiError("This document does not exist (or is not yours).", 102);
  document.title = `${doc.name} · Ragline`;
  const citedId = hashQuery().get("chunk");
  let page = 1;
  let keywords = "";
  const listSlot = errorSlot();
  const list = h("div", { id: "chunks" });
  const summary = h("p", { class: "muted", "aria-live": "polite" });
  const pager = h("div", { class: "pager" });
  const citedBox = h("section", { "aria-label": "Cited chunk" });

  function chunkCard(chunk, cited = false) {
    const slot = errorSlot();
    const card = h("article", { class: `chunk${chunk.available === false ? " disabled" : ""}${cited ? " cited" : ""}`,
      dataset: { id: chunk.id }, tabindex: cited ? -1 : null });
    const content = h("pre", { text: chunk.content });
    const keywordsLine = (chunk.important_keywords || []).length
      ? h("p", { class: "hint", text: `Keywords: ${chunk.important_keywords.join(", ")}` }) : null;
    const toggle = h("button", { type: "button", class: "small", text: chunk.available === false ? "Enable" : "Disable" });
    toggle.onclick = () => guarded(slot, toggle, async () => {
      const available = chunk.available === false;
      await api("PUT", `/datasets/${datasetId}/documents/${docId}/chunks/${chunk.id}`, { body: { available } });
      chunk.available = available;
      announce(`Chunk ${available ? "enabled" : "disabled"}.`);
      card.replaceWith(chunkCard(chunk, cited));
    });
    const edit = h("button", { type: "button", class: "small", text: "Edit" });
    edit.onclick = () => card.replaceWith(editor(chunk, cited));
    const remove = h("button", { type: "button", class: "small danger", text: "Delete" });
    remove.onclick = () => guarded(slot, remove, async () => {
      if (!(await confirmAction("Delete this chunk?", "It will no longer be found by retrieval or chat."))) return;
      await api("DELETE", `/datasets/${datasetId}/documents/${docId}/chunks`, { body: { chunk_ids: [chunk.id] } });
      announce("Chunk deleted.");
      card.remove();
      if (!cited) await load();
    });
    card.append(
      h("header", {}, h("span", { class: "mono", text: `${cited ? "Cited chunk · " : ""}${chunk.id}` }),
        h("span", {}, chunk.available === false ? h("span", { class: "badge", text: "disabled" }) : null)),
      content, ...(keywordsLine ? [keywordsLine] : []), h("div", { class: "actions" }, edit, toggle, remove), slot);
    return card;
  }

  function editor(chunk, cited) {
    const slot = errorSlot();
    const text = h("textarea", { rows: 8 });
    text.value = chunk.content;
    const keywordsInput = h("input", { type: "text", value: (chunk.important_keywords || []).join(", ") });
    const save = h("button", { type: "submit", class: "primary", text: "Save" });
    const cancel = h("button", { type: "button", text: "Cancel" });
    const form = h("form", { class: "chunk" }, field("Chunk content", text),
      field("Important keywords", keywordsInput, "Comma-separated."), slot, h("div", { class: "actions" }, save, cancel));
    cancel.onclick = () => form.replaceWith(chunkCard(chunk, cited));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      guarded(slot, save, async () => {
        const important = keywordsInput.value.split(",").map((k) => k.trim()).filter(Boolean);
        await api("PUT", `/datasets/${datasetId}/documents/${docId}/chunks/${chunk.id}`,
          { body: { content: text.value, important_keywords: important } });
        Object.assign(chunk, { content: text.value, important_keywords: important });
        announce("Chunk saved.");
        const card = chunkCard(chunk, cited);
        form.replaceWith(card);
        card.querySelector("button").focus();
      });
    });
    setTimeout(() => text.focus(), 0);
    return form;
  }

  async function load() {
    const data = await api("GET", `/datasets/${datasetId}/documents/${docId}/chunks`,
      { query: { page, page_size: PAGE_SIZE, keywords } });
    summary.textContent = keywords ? `${data.total} chunk(s) match “${keywords}”.` : `${data.total} chunk(s).`;
    list.replaceChildren(...(data.chunks.length ? data.chunks.map((c) => chunkCard(c))
      : [h("p", { class: "muted", text: keywords ? "No chunk matches." : "No chunk yet: parse the document first." })]));
    const pages = Math.max(1, Math.ceil(data.total / PAGE_SIZE));
    const go = (to) => { page = to; guarded(listSlot, null, load); };
    pager.replaceChildren(...(pages > 1 ? [
      h("button", { type: "button", class: "small", text: "Previous", disabled: page <= 1, onclick: () => go(page - 1) }),
      h("span", { text: `Page ${page} of ${pages}` }),
      h("button", { type: "button", class: "small", text: "Next", disabled: page >= pages, onclick: () => go(page + 1) })] : []));
  }

  async function loadCited() {
    const data = await api("GET", `/datasets/${datasetId}/documents/${docId}/chunks`, { query: { id: citedId } });
    const chunk = data.chunks.find((c) => c.id === citedId);
    if (!chunk) throw new ApiError("The cited chunk no longer exists (the document may have been re-parsed).", 102);
    const card = chunkCard(chunk, true);
    citedBox.replaceChildren(card);
    card.dataset.autofocus = "true";
  }

  const search = h("input", { type: "search", id: "chunk-search", placeholder: "Words in the chunk…" });
  const searchForm = h("form", { role: "search", class: "row" },
    h("div", {}, h("label", { for: "chunk-search", text: "Search chunks" }), search), h("button", { type: "submit", text: "Search" }));
  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    keywords = search.value.trim();
    page = 1;
    guarded(listSlot, null, load);
  });
  const pageSlot = errorSlot();
  const download = h("button", { type: "button", text: "Download document" });
  download.onclick = () => guarded(pageSlot, download, () => downloadDocument(datasetId, doc));

  main.append(
    h("p", {}, h("a", { href: "#/datasets", text: "Datasets" }), " / ", h("a", { href: `#/datasets/${datasetId}`, text: dataset.name })),
    h("div", { class: "toolbar" }, h("h1", { text: doc.name }), h("div", { class: "actions" }, download)),
    h("p", { class: "muted" }, h("span", { class: `badge ${doc.run}`, text: doc.run }), ` · ${doc.chunk_count} chunk(s) · ${doc.chunk_method}`),
    pageSlot, citedBox, searchForm, summary, listSlot, list, pager);
  if (citedId) await guarded(pageSlot, null, loadCited);
  await guarded(listSlot, null, load);
}
