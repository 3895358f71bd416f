// Datasets: list, create (embedding model, chunk method and its settings), edit, delete.
import {
  api, apiEnvelope, announce, confirmAction, errorSlot, field, formatDate, formatNumber, guarded, h, openDialog,
} from "/ui/lib.js";

export const BUILTIN_EMBEDDING = "all-MiniLM-L6-v2@Builtin";
export const CHUNK_METHODS = [
  ["naive", "General: split text into chunks of about N tokens"],
  ["qa", "Q&A: one question/answer pair per chunk"],
  ["table", "Table: one row per chunk (CSV, spreadsheets)"],
  ["one", "One: the whole document is one chunk"],
  ["manual", "Manual"], ["paper", "Paper"], ["book", "Book"], ["laws", "Laws"],
  ["presentation", "Presentation"], ["picture", "Picture"], ["email", "Email"], ["tag", "Tag"], ["resume", "Resume"],
];
const DEFAULT_DELIMITER = "\\n!?;。；！？";

/** Delimiters are shown with `\n` written out, so a person can see and type them. */
const showDelimiter = (value) => (value ?? "\n!?;。；！？").replace(/\n/g, "\\n").replace(/\t/g, "\\t");
const readDelimiter = (value) => value.replace(/\\n/g, "\n").replace(/\\t/g, "\t");

function numberInput(name, value, min, max, step = 1) {
  return h("input", { type: "number", name, min, max, step, value: value ?? "" });
}

/**
 * The dataset form, for creating (`dataset` null) and editing. `onSave(body)` gets only what
 * the API needs: on edit, only the fields that changed.
 */
export function datasetForm(dataset, models, onSave) {
  const config = dataset?.parser_config || {};
  const name = h("input", { type: "text", name: "name", required: true, maxlength: 128, value: dataset?.name || "" });
  const description = h("textarea", { name: "description", rows: 2 });
  description.value = dataset?.description || "";
  const listId = `embedding-models-${Math.random().toString(36).slice(2)}`;
  const embedding = h("input", { type: "text", name: "embedding_model", list: listId, placeholder: BUILTIN_EMBEDDING,
    value: dataset?.embedding_model || "" });
  const modelList = h("datalist", { id: listId }, [...new Set([BUILTIN_EMBEDDING, ...models])].map((m) => h("option", { value: m })));
  const method = h("select", { name: "chunk_method" },
    CHUNK_METHODS.map(([value, label]) => h("option", { value, selected: (dataset?.chunk_method || "naive") === value }, label)));
  const tokens = numberInput("chunk_token_num", config.chunk_token_num ?? 512, 1, 2048);
  const delimiter = h("input", { type: "text", name: "delimiter", value: showDelimiter(config.delimiter) });
  const overlap = numberInput("overlap", config.overlap ?? "", 0, 90);
  const keywords = numberInput("auto_keywords", config.auto_keywords ?? 0, 0, 32);
  const questions = numberInput("auto_questions", config.auto_questions ?? 0, 0, 10);
  const slot = errorSlot();
  const save = h("button", { type: "submit", class: "primary", text: dataset ? "Save changes" : "Create dataset" });
  const hasChunks = (dataset?.chunk_count || 0) > 0;
  const form = h("form", {},
    field("Name", name),
    field("Description", description),
    field("Embedding model", embedding, hasChunks
      ? "This dataset has chunks: its embedding model cannot change (Ragline refuses it)."
      : "name@provider; empty means the built-in model. The model must be configured on the server."),
    modelList,
    h("fieldset", {}, h("legend", { text: "Chunking" }),
      field("Chunk method", method),
      h("div", { class: "row" },
        field("Chunk size (tokens)", tokens),
        field("Overlap (%)", overlap),
        field("Auto keywords", keywords),
        field("Auto questions", questions)),
      field("Delimiters", delimiter, `Characters that end a sentence; \\n is a line break. Default ${DEFAULT_DELIMITER}`)),
    slot, h("div", { class: "actions" }, save));
  if (hasChunks) embedding.readOnly = true;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const parser = { chunk_token_num: Number(tokens.value) || 512, delimiter: readDelimiter(delimiter.value) || "\n" };
    if (overlap.value !== "") parser.overlap = Number(overlap.value);
    parser.auto_keywords = Number(keywords.value) || 0;
    parser.auto_questions = Number(questions.value) || 0;
    const body = { name: name.value.trim(), description: description.value, chunk_method: method.value, parser_config: parser };
    if (embedding.value.trim()) body.embedding_model = embedding.value.trim();
    if (dataset) {
      for (const key of ["name", "description", "chunk_method", "embedding_model"]) {
        if (body[key] === undefined || body[key] === (dataset[key] ?? "")) delete body[key];
      }
      if (JSON.stringify(parser) === JSON.stringify(pick(config, Object.keys(parser)))) delete body.parser_config;
    }
    guarded(slot, save, () => onSave(body));
  });
  return form;
}

const pick = (object, keys) => Object.fromEntries(keys.filter((k) => k in object).map((k) => [k, object[k]]));

/** Opens the edit form of `dataset` in a dialog; `after(updated)` runs once it is saved. */
export function editDataset(dataset, models, after) {
  const holder = {};
  const form = datasetForm(dataset, models, async (body) => {
    const updated = Object.keys(body).length ? await api("PUT", `/datasets/${dataset.id}`, { body }) : dataset;
    holder.close();
    announce(`Dataset ${dataset.name} saved.`);
    after(updated);
  });
  holder.close = openDialog(`Edit dataset “${dataset.name}”`, form).close;
  form.querySelector("input").focus();
}

export async function deleteDataset(dataset) {
  const yes = await confirmAction("Delete this dataset?",
    `“${dataset.name}” and its ${dataset.document_count} documents and ${dataset.chunk_count} chunks will be deleted for good.`);
  if (!yes) return false;
  await api("DELETE", "/datasets", { body: { ids: [dataset.id] } });
  announce(`Dataset ${dataset.name} deleted.`);
  return true;
}

export async function render(main) {
  document.title = "Datasets · Ragline";
  const listSlot = errorSlot();
  const body = h("tbody");
  const count = h("p", { class: "muted" });
  let models = [];

  async function load() {
    const envelope = await apiEnvelope("GET", "/datasets", { query: { page: 1, page_size: 100, orderby: "create_time", desc: true } });
    const items = envelope.data;
    models = items.map((d) => d.embedding_model).filter(Boolean);
    count.textContent = `${envelope.total_datasets ?? items.length} dataset(s).`;
    createBox.open = items.length === 0;
    body.replaceChildren(...(items.length ? items.map(row) : [h("tr", {}, h("td", { colspan: 7, class: "muted", text: "No dataset yet: create one above." }))]));
  }

  function row(dataset) {
    const rowSlot = errorSlot();
    const edit = h("button", { type: "button", class: "small", text: "Edit", "aria-label": `Edit ${dataset.name}`,
      onclick: () => editDataset(dataset, models, () => guarded(listSlot, null, load)) });
    const remove = h("button", { type: "button", class: "small danger", text: "Delete", "aria-label": `Delete ${dataset.name}`,
      onclick: () => guarded(rowSlot, remove, async () => { if (await deleteDataset(dataset)) await load(); }) });
    return h("tr", { dataset: { id: dataset.id } },
      h("td", {}, h("a", { href: `#/datasets/${dataset.id}`, text: dataset.name }),
        dataset.description ? h("div", { class: "hint", text: dataset.description }) : null, rowSlot),
      h("td", { class: "num", text: formatNumber(dataset.document_count) }),
      h("td", { class: "num", text: formatNumber(dataset.chunk_count) }),
      h("td", { class: "mono", text: dataset.embedding_model }),
      h("td", { text: dataset.chunk_method }),
      h("td", { text: formatDate(dataset.create_time) }),
      h("td", {}, h("div", { class: "actions" }, edit, remove)));
  }

  const createBox = h("details", { class: "panel" }, h("summary", { text: "New dataset" }),
    datasetForm(null, models, async (payload) => {
      const created = await api("POST", "/datasets", { body: payload });
      announce(`Dataset ${created.name} created.`);
      location.hash = `#/datasets/${created.id}`;
    }));

  main.append(h("h1", { text: "Datasets" }), createBox, h("h2", { text: "Your datasets" }), count, listSlot,
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Name", "Documents", "Chunks", "Embedding model", "Chunk method", "Created", "Actions"]
        .map((title, i) => h("th", { scope: "col", class: i === 1 || i === 2 ? "num" : null, text: title })))),
      body)));
  await guarded(listSlot, null, load);
}
