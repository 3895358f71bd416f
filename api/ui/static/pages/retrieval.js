// The retrieval test: a question against chosen datasets, the ranked chunks with their scores.
import { api, errorSlot, field, guarded, h, hashQuery, listAll } from "/ui/lib.js";

const score = (value) => (value === undefined || value === null ? "–" : Number(value).toFixed(4));

export async function render(main) {
  document.title = "Retrieval test · Ragline";
  const chosen = hashQuery().get("dataset");
  const datasets = await listAll("/datasets");
  const slot = errorSlot();
  const results = h("div", { id: "results", "aria-live": "polite" });
  const boxes = datasets.map((d) => h("label", { class: "inline" },
    h("input", { type: "checkbox", name: "dataset", value: d.id, checked: chosen ? d.id === chosen : datasets.length === 1 }),
    `${d.name} (${d.chunk_count} chunks)`));
  const question = h("textarea", { id: "question", rows: 2, required: true });
  const weight = h("input", { type: "number", id: "weight", min: 0, max: 1, step: 0.05, value: 0.3 });
  const threshold = h("input", { type: "number", id: "threshold", min: 0, max: 1, step: 0.05, value: 0.2 });
  const topK = h("input", { type: "number", id: "top-k", min: 1, max: 10000, step: 1, value: 1024 });
  const pageSize = h("input", { type: "number", id: "page-size", min: 1, max: 100, step: 1, value: 10 });
  const run = h("button", { type: "submit", class: "primary", text: "Test retrieval" });
  const form = h("form", { class: "panel" },
    h("fieldset", {}, h("legend", { text: "Datasets" }),
      boxes.length ? boxes : h("p", { class: "muted" }, "No dataset yet. ", h("a", { href: "#/datasets", text: "Create one." }))),
    field("Question", question),
    h("div", { class: "row" },
      field("Vector similarity weight", weight, "0 = keywords only, 1 = vectors only."),
      field("Similarity threshold", threshold, "Chunks scoring below are dropped."),
      field("Top-k candidates", topK),
      field("Results shown", pageSize)),
    slot, h("div", { class: "actions" }, run));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const ids = [...form.querySelectorAll("input[name=dataset]:checked")].map((box) => box.value);
    guarded(slot, run, async () => {
      if (!ids.length) throw new Error("Choose at least one dataset.");
      const data = await api("POST", "/retrieval", { body: {
        dataset_ids: ids, question: question.value, vector_similarity_weight: Number(weight.value),
        similarity_threshold: Number(threshold.value), top_k: Number(topK.value), page: 1, page_size: Number(pageSize.value),
      } });
      showResults(data, ids);
    });
  });

  function showResults(data, ids) {
    const byDoc = new Map(datasets.map((d) => [d.id, d]));
    const items = data.chunks.map((chunk, index) => h("li", { class: "chunk", dataset: { id: chunk.id } },
      h("header", {},
        h("a", { href: `#/datasets/${chunk.dataset_id || chunk.kb_id}/documents/${chunk.document_id}?chunk=${chunk.id}`,
          text: `#${index + 1} · ${chunk.document_keyword || chunk.docnm_kwd || chunk.document_id}` }),
        h("span", { class: "scores" },
          h("span", {}, "similarity ", h("strong", { text: score(chunk.similarity) })),
          h("span", { text: `term ${score(chunk.term_similarity)}` }),
          h("span", { text: `vector ${score(chunk.vector_similarity)}` }))),
      h("pre", { text: chunk.content }),
      ids.length > 1 ? h("p", { class: "hint", text: byDoc.get(chunk.dataset_id)?.name || "" }) : null));
    results.replaceChildren(
      h("h2", { text: "Ranked chunks" }),
      h("p", { class: "muted", text: `${data.total} chunk(s) above the threshold; showing ${data.chunks.length}.` }),
      items.length ? h("ol", { class: "ranked" }, items) : h("p", { text: "Nothing passed the threshold: lower it or rephrase." }));
  }

  main.append(h("h1", { text: "Retrieval test" }),
    h("p", { class: "muted", text: "Ask what a chat would ask and see which chunks Ragline retrieves, with their term and vector scores." }),
    form, results);
}
