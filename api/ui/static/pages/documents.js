// A dataset's documents: drag-and-drop upload with per-file progress (upload, then parsing as
// Ragline reports it), status and message per document, parse/re-parse, cancel, delete, download.
import {
  ApiError, announce, api, apiUrl, authHeaders, confirmAction, errorSlot, formatBytes, formatDate, guarded, h,
  percent, readEnvelope,
} from "/ui/lib.js";
import { deleteDataset, editDataset } from "/ui/pages/datasets.js";

const POLL_MS = 1000;
const PAGE_SIZE = 50;

/** Uploads one file with XMLHttpRequest (fetch cannot report upload progress). */
function uploadFile(datasetId, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", apiUrl(`/datasets/${datasetId}/documents`));
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (event) => { if (event.lengthComputable) onProgress(event.loaded / event.total); });
    xhr.addEventListener("load", async () => {
      const envelope = await readEnvelope(new Response(xhr.responseText, { status: xhr.status }));
      if (envelope.code === 0 && Array.isArray(envelope.data) && envelope.data.length) resolve(envelope.data[0]);
      else reject(new ApiError(envelope.message || `Upload failed (HTTP ${xhr.status}).`, envelope.code));
    });
    xhr.addEventListener("error", () => reject(new ApiError("The upload did not reach Ragline (network error).", -1)));
    xhr.addEventListener("abort", () => reject(new ApiError("Upload cancelled.", -1)));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

/** Downloads a document through the API (the key travels in the header, not in the URL). */
export async function downloadDocument(datasetId, doc) {
  const response = await fetch(apiUrl(`/datasets/${datasetId}/documents/${doc.id}`), { headers: authHeaders() });
  const type = response.headers.get("Content-Type") || "";
  if (!response.ok || type.includes("application/json")) {
    const envelope = await readEnvelope(response);
    throw new ApiError(envelope.message || `Download failed (HTTP ${response.status}).`, envelope.code);
  }
  const url = URL.createObjectURL(await response.blob());
  const link = h("a", { href: url, download: doc.name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

const lastLine = (text) => (text || "").trim().split("\n").filter(Boolean).pop() || "";
const isActive = (doc) => doc.run === "RUNNING";

/** The status cell's content: run badge, progress bar and Ragline's latest message. */
function statusView(doc) {
  const label = doc.run === "RUNNING" ? `Parsing ${percent(doc.progress)}` : doc.run;
  return [
    h("span", { class: `badge ${doc.run}`, text: label }), " ",
    h("progress", { max: 1, value: Math.max(0, Number(doc.progress) || 0), "aria-label": `${doc.name}: ${label}` }),
    h("div", { class: `progress-msg${doc.run === "FAIL" ? " failed" : ""}`, title: doc.progress_msg || "", text: lastLine(doc.progress_msg) }),
  ];
}

export async function render(main, [datasetId]) {
  let dataset = null;
  let page = 1;
  let keywords = "";
  let timer = null;
  let left = false;
  const rows = new Map(); // doc id → {row, doc}
  const uploads = new Map(); // doc id → upload list item updater
  const pageSlot = errorSlot();
  const listSlot = errorSlot();
  const tbody = h("tbody");
  const summary = h("p", { class: "muted" });
  const pager = h("div", { class: "pager" });
  const heading = h("h1", { text: "Documents" });
  const info = h("p", { class: "muted" });

  const found = await api("GET", "/datasets", { query: { id: datasetId } });
  dataset = found[0];
  if (!dataset) throw new ApiError("This dataset does not exist (or is not yours).", 102);
  const title = () => { heading.textContent = dataset.name; document.title = `${dataset.name} · Ragline`; };
  title();
  info.textContent = `Embedding model ${dataset.embedding_model} · chunk method ${dataset.chunk_method}`;

  async function load() {
    const data = await api("GET", `/datasets/${datasetId}/documents`,
      { query: { page, page_size: PAGE_SIZE, keywords, orderby: "create_time", desc: true } });
    const docs = data.docs;
    const sameSet = docs.length === rows.size && docs.every((doc) => rows.has(doc.id));
    if (sameSet) docs.forEach(updateRow); else drawRows(docs);
    docs.forEach((doc) => uploads.get(doc.id)?.(doc));
    summary.textContent = `${data.total} document(s).`;
    drawPager(data.total);
    schedule(docs.some(isActive) || [...uploads.keys()].length > 0);
  }

  function schedule(active) {
    clearTimeout(timer);
    if (active && !left) timer = setTimeout(() => guarded(listSlot, null, load), POLL_MS);
  }

  function drawRows(docs) {
    rows.clear();
    tbody.replaceChildren(...(docs.length ? docs.map(makeRow)
      : [h("tr", {}, h("td", { colspan: 6, class: "muted", text: keywords ? "No document matches." : "No document yet: upload some above." }))]));
  }

  function makeRow(doc) {
    const cells = { status: h("td"), chunks: h("td", { class: "num" }), actions: h("td") };
    const row = h("tr", { dataset: { id: doc.id } },
      h("td", {}, h("a", { href: `#/datasets/${datasetId}/documents/${doc.id}`, text: doc.name }),
        h("div", { class: "hint", text: `${doc.type || ""} · ${formatDate(doc.create_time)}` })),
      h("td", { class: "num", text: formatBytes(doc.size) }),
      h("td", { text: doc.chunk_method }),
      cells.status, cells.chunks, cells.actions);
    rows.set(doc.id, { row, cells, doc: null });
    updateRow(doc);
    return row;
  }

  function updateRow(doc) {
    const entry = rows.get(doc.id);
    const before = entry.doc;
    entry.doc = doc;
    entry.row.className = doc.run === "FAIL" ? "failed" : "";
    entry.cells.status.replaceChildren(...statusView(doc));
    entry.cells.chunks.textContent = doc.chunk_count;
    if (!before || before.run !== doc.run) entry.cells.actions.replaceChildren(actions(doc));
  }

  function actions(doc) {
    const slot = errorSlot();
    const buttons = [];
    const named = (text) => `${text} ${doc.name}`;
    if (isActive(doc)) {
      const cancel = h("button", { type: "button", class: "small", text: "Cancel", "aria-label": named("Cancel parsing") });
      cancel.onclick = () => guarded(slot, cancel, async () => {
        await api("DELETE", `/datasets/${datasetId}/chunks`, { body: { document_ids: [doc.id] } });
        announce(`Parsing of ${doc.name} cancelled.`);
        await load();
      });
      buttons.push(cancel);
    } else {
      const again = doc.run !== "UNSTART";
      const parse = h("button", { type: "button", class: "small", text: again ? "Re-parse" : "Parse", "aria-label": named(again ? "Re-parse" : "Parse") });
      parse.onclick = () => guarded(slot, parse, async () => {
        if (doc.run === "DONE" && !(await confirmAction("Re-parse this document?",
          `The ${doc.chunk_count} chunks of “${doc.name}” will be replaced, including any edits.`, "Re-parse"))) return;
        await api("POST", `/datasets/${datasetId}/chunks`, { body: { document_ids: [doc.id] } });
        announce(`${doc.name} queued for parsing.`);
        await load();
      });
      buttons.push(parse);
    }
    const download = h("button", { type: "button", class: "small", text: "Download", "aria-label": named("Download") });
    download.onclick = () => guarded(slot, download, () => downloadDocument(datasetId, doc));
    const remove = h("button", { type: "button", class: "small danger", text: "Delete", "aria-label": named("Delete") });
    remove.onclick = () => guarded(slot, remove, async () => {
      if (!(await confirmAction("Delete this document?", `“${doc.name}” and its chunks will be deleted for good.`))) return;
      await api("DELETE", `/datasets/${datasetId}/documents`, { body: { ids: [doc.id] } });
      announce(`${doc.name} deleted.`);
      await load();
    });
    buttons.push(download, remove);
    return h("div", {}, h("div", { class: "actions" }, buttons), slot);
  }

  function drawPager(total) {
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    if (pages === 1) { pager.replaceChildren(); return; }
    const go = (to) => { page = to; guarded(listSlot, null, load); };
    pager.replaceChildren(
      h("button", { type: "button", class: "small", text: "Previous", disabled: page <= 1, onclick: () => go(page - 1) }),
      h("span", { text: `Page ${page} of ${pages}` }),
      h("button", { type: "button", class: "small", text: "Next", disabled: page >= pages, onclick: () => go(page + 1) }));
  }

  // -- upload -------------------------------------------------------------------------------
  const fileInput = h("input", { type: "file", id: "file-input", multiple: true, class: "visually-hidden" });
  const parseAfter = h("input", { type: "checkbox", id: "parse-after", checked: true });
  const uploadList = h("ul", { class: "uploads", "aria-label": "Uploads" });
  const chooser = h("label", { for: "file-input", class: "button", text: "Choose files" });
  const dropzone = h("div", { class: "dropzone", id: "dropzone" },
    h("p", {}, "Drop files here, or ", chooser, fileInput),
    h("p", { class: "hint", text: "txt, md, html, pdf, docx, csv, json … several at once." }),
    h("label", { class: "inline", for: "parse-after" }, parseAfter, "Parse each file once it is uploaded"));
  for (const name of ["dragenter", "dragover"]) {
    dropzone.addEventListener(name, (event) => { event.preventDefault(); dropzone.classList.add("over"); });
  }
  dropzone.addEventListener("dragleave", () => dropzone.classList.remove("over"));
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropzone.classList.remove("over");
    startUploads([...event.dataTransfer.files]);
  });
  fileInput.addEventListener("change", () => { startUploads([...fileInput.files]); fileInput.value = ""; });

  function startUploads(files) {
    if (!files.length) return;
    announce(`Uploading ${files.length} file(s).`);
    files.forEach(uploadOne);
  }

  async function uploadOne(file) {
    const bar = h("progress", { max: 1, value: 0, "aria-label": `${file.name} progress` });
    const state = h("span", { text: "Uploading 0%" });
    const item = h("li", { dataset: { file: file.name } }, h("span", { class: "mono", text: file.name }), bar, state);
    uploadList.append(item);
    const set = (value, text, failed = false) => {
      bar.value = value;
      state.textContent = text;
      state.className = failed ? "progress-msg failed" : "progress-msg";
      item.dataset.state = failed ? "FAIL" : text.split(" ")[0];
    };
    try {
      const doc = await uploadFile(datasetId, file, (share) => set(share, `Uploading ${percent(share)}`));
      set(0, parseAfter.checked ? "Queued for parsing" : "Uploaded (not parsed)");
      if (parseAfter.checked) {
        await api("POST", `/datasets/${datasetId}/chunks`, { body: { document_ids: [doc.id] } });
        uploads.set(doc.id, (latest) => {
          if (latest.run === "RUNNING") set(latest.progress, `Parsing ${percent(latest.progress)} ${lastLine(latest.progress_msg)}`);
          else {
            uploads.delete(doc.id);
            const failed = latest.run === "FAIL" || latest.run === "CANCEL";
            set(failed ? latest.progress : 1, latest.run === "DONE" ? `DONE · ${latest.chunk_count} chunk(s)`
              : `${latest.run}: ${lastLine(latest.progress_msg)}`, failed);
            announce(`${file.name}: ${latest.run}.`);
          }
        });
      } else {
        item.dataset.state = "UPLOADED";
      }
      await load();
    } catch (error) {
      set(0, `Failed: ${error.message}`, true);
      announce(`${file.name} failed: ${error.message}`);
    }
  }

  // -- search, header actions -----------------------------------------------------------------
  const search = h("input", { type: "search", id: "doc-search", placeholder: "Name contains…" });
  const searchForm = h("form", { role: "search", class: "row" },
    h("div", {}, h("label", { for: "doc-search", text: "Search documents" }), search),
    h("button", { type: "submit", text: "Search" }));
  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    keywords = search.value.trim();
    page = 1;
    guarded(listSlot, null, load);
  });
  const editButton = h("button", { type: "button", text: "Dataset settings" });
  editButton.onclick = () => editDataset(dataset, [], (updated) => { dataset = updated; title(); });
  const deleteButton = h("button", { type: "button", class: "danger", text: "Delete dataset" });
  deleteButton.onclick = () => guarded(pageSlot, deleteButton, async () => {
    if (await deleteDataset(dataset)) location.hash = "#/datasets";
  });

  main.append(
    h("p", {}, h("a", { href: "#/datasets", text: "← Datasets" })),
    h("div", { class: "toolbar" }, heading, h("div", { class: "actions" },
      h("a", { class: "button", href: `#/retrieval?dataset=${datasetId}`, text: "Retrieval test" }), editButton, deleteButton)),
    info, pageSlot,
    h("h2", { text: "Upload" }), dropzone, uploadList,
    h("h2", { text: "Documents" }), searchForm, summary, listSlot,
    h("div", { class: "table-wrap" }, h("table", { id: "documents" },
      h("thead", {}, h("tr", {}, ["Name", "Size", "Chunk method", "Status", "Chunks", "Actions"]
        .map((text, i) => h("th", { scope: "col", class: i === 1 || i === 4 ? "num" : null, text })))),
      tbody)),
    pager);
  await guarded(listSlot, null, load);
  return () => { left = true; clearTimeout(timer); };
}
