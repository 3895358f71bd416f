// Chat: assistants (datasets, model, prompt, tone), their sessions, answers streamed token by
// token from POST /chats/<id>/completions, citations [ID:n] as markers that open the chunk.
import {
  ApiError, announce, api, apiUrl, authHeaders, confirmAction, errorSlot, field, guarded, h, listAll, openDialog,
  readEnvelope,
} from "/ui/lib.js";

const TONES = ["", "professional", "friendly", "empathetic", "concise", "formal", "casual"];
const CITATION = /\[ID:(\d+)\]/g;

/**
 * The assistants and the API line the tenant's client speaks. GET /chats answers a bare list to
 * v0.22 clients and {chats, total} to v0.27 ones; the UI writes chat bodies in the same line's
 * shape, so using the UI never changes what the tenant's scripts get back.
 */
async function loadChats() {
  const data = await api("GET", "/chats", { query: { page: 1, page_size: 200, orderby: "update_time" } });
  return Array.isArray(data) ? { line: "0.22", chats: data } : { line: "0.27", chats: data.chats || [] };
}

function chatBody(line, values) {
  const body = { name: values.name, dataset_ids: values.datasetIds, top_n: values.topN, similarity_threshold: values.threshold };
  if (line === "0.27") {
    if (values.model) body.llm_id = values.model;
    body.prompt_config = { prologue: values.opener, ...(values.prompt ? { system: values.prompt } : {}), ...(values.tone ? { tone: values.tone } : {}) };
  } else {
    if (values.model) body.llm = { model_name: values.model };
    body.prompt = { opener: values.opener, ...(values.prompt ? { prompt: values.prompt } : {}), ...(values.tone ? { tone: values.tone } : {}) };
  }
  return body;
}

function assistantForm(chat, datasets, models, onSave) {
  const config = chat?.prompt_config || {};
  const name = h("input", { type: "text", required: true, maxlength: 255, value: chat?.name || "" });
  const listId = `chat-models-${Math.random().toString(36).slice(2)}`;
  const model = h("input", { type: "text", list: listId, value: chat?.llm_id || "", placeholder: "the server's default chat model" });
  const prompt = h("textarea", { rows: 6 });
  prompt.value = config.system || "";
  const tone = h("select", {}, TONES.map((t) => h("option", { value: t, selected: (config.tone || "") === t }, t || "(none)")));
  const opener = h("input", { type: "text", value: config.prologue ?? "Hi! I'm your assistant. What can I do for you?" });
  const topN = h("input", { type: "number", min: 1, max: 100, value: chat?.top_n ?? 6 });
  const threshold = h("input", { type: "number", min: 0, max: 1, step: 0.05, value: chat?.similarity_threshold ?? 0.2 });
  const chosen = new Set(chat?.dataset_ids || []);
  const boxes = datasets.map((d) => h("label", { class: "inline" },
    h("input", { type: "checkbox", name: "dataset", value: d.id, checked: chosen.has(d.id) }), d.name));
  const slot = errorSlot();
  const save = h("button", { type: "submit", class: "primary", text: chat ? "Save assistant" : "Create assistant" });
  const form = h("form", {},
    field("Name", name),
    h("fieldset", {}, h("legend", { text: "Datasets it answers from" }),
      boxes.length ? boxes : h("p", { class: "muted", text: "No dataset yet: the assistant will answer without retrieval." })),
    field("Model", model, "name@provider, e.g. gpt-4o-mini@OpenAI; empty keeps the server's default."),
    h("datalist", { id: listId }, [...new Set(models)].map((m) => h("option", { value: m }))),
    field("System prompt", prompt, "Empty keeps Ragline's default. {knowledge} is where the retrieved chunks go."),
    h("div", { class: "row" }, field("Tone", tone), field("Chunks in the prompt (top N)", topN), field("Similarity threshold", threshold)),
    field("Opening message", opener),
    slot, h("div", { class: "actions" }, save));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(slot, save, () => onSave({
      name: name.value.trim(), model: model.value.trim(), prompt: prompt.value, tone: tone.value, opener: opener.value,
      topN: Number(topN.value), threshold: Number(threshold.value),
      datasetIds: [...form.querySelectorAll("input[name=dataset]:checked")].map((box) => box.value),
    }));
  });
  return form;
}

/** The answer's text with each [ID:n] turned into a numbered button that opens chunk n. */
function answerNodes(text, reference) {
  const chunks = (Array.isArray(reference) ? reference : reference?.chunks) || [];
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(CITATION)) {
    nodes.push(text.slice(last, match.index));
    const index = Number(match[1]);
    const chunk = chunks[index];
    nodes.push(chunk
      ? h("button", { type: "button", class: "cite", "aria-label": `Source ${index + 1}: ${chunk.document_name || chunk.document_keyword || ""}`,
        dataset: { chunk: chunk.id }, onclick: () => showCitation(chunk, index), text: String(index + 1) })
      : match[0]);
    last = match.index + match[0].length;
  }
  nodes.push(text.slice(last));
  return nodes;
}

function sourcesList(reference) {
  const chunks = (Array.isArray(reference) ? reference : reference?.chunks) || [];
  if (!chunks.length) return null;
  return h("details", { class: "sources" }, h("summary", { text: `${chunks.length} source chunk(s)` }),
    h("ol", { start: 1 }, chunks.map((chunk, index) => h("li", {},
      h("button", { type: "button", class: "link", text: chunk.document_name || chunk.document_keyword || chunk.document_id,
        onclick: () => showCitation(chunk, index) })))));
}

function chunkHref(chunk) {
  return `#/datasets/${chunk.dataset_id || chunk.kb_id}/documents/${chunk.document_id}?chunk=${chunk.id}`;
}

/** The cited chunk in a dialog, with the way to its document. */
function showCitation(chunk, index) {
  const { close } = openDialog(`Source ${index + 1}: ${chunk.document_name || chunk.document_keyword || "document"}`, h("div", { class: "citation" },
    h("p", { class: "scores" },
      h("span", { text: `similarity ${Number(chunk.similarity ?? 0).toFixed(3)}` }),
      h("span", { text: `term ${Number(chunk.term_similarity ?? 0).toFixed(3)}` }),
      h("span", { text: `vector ${Number(chunk.vector_similarity ?? 0).toFixed(3)}` })),
    h("pre", { class: "chunk", text: chunk.content || chunk.content_with_weight || "" }),
    h("div", { class: "actions" },
      h("a", { class: "button primary", href: chunkHref(chunk), onclick: () => close(), text: "Open the chunk in its document" }))));
}

function messageView(message) {
  const who = message.role === "user" ? "You" : "Assistant";
  const body = h("div", { class: "text" }, message.role === "user" ? message.content : answerNodes(message.content || "", message.reference));
  return h("div", { class: `msg ${message.role}`, dataset: { role: message.role } },
    h("span", { class: "who", text: who }), body, message.role === "assistant" ? sourcesList(message.reference) : null);
}

/** Reads the SSE stream of a completion; `onEvent(envelope)` per `data:` line. */
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5)).join("\n");
      if (data.trim()) onEvent(JSON.parse(data));
    }
  }
}

export async function render(main, [chatId, sessionId]) {
  document.title = "Chat · Ragline";
  const [{ line, chats }, datasets] = await Promise.all([loadChats(), listAll("/datasets")]);
  const chat = chats.find((c) => c.id === chatId) || null;
  const models = chats.map((c) => c.llm_id).filter(Boolean);
  let controller = null;
  const pageSlot = errorSlot();

  function openForm(existing) {
    const holder = {};
    const form = assistantForm(existing, datasets, models, async (values) => {
      const body = chatBody(line, values);
      const saved = existing ? await api("PUT", `/chats/${existing.id}`, { body }) : await api("POST", "/chats", { body });
      holder.close();
      announce(`Assistant ${saved.name} saved.`);
      if (existing) window.dispatchEvent(new HashChangeEvent("hashchange")); else location.hash = `#/chats/${saved.id}`;
    });
    holder.close = openDialog(existing ? `Edit assistant “${existing.name}”` : "New assistant", form).close;
    form.querySelector("input").focus();
  }

  const newChat = h("button", { type: "button", class: "primary", text: "New assistant", onclick: () => openForm(null) });
  const chatList = h("ul", { "aria-label": "Assistants" }, chats.map((c) => h("li", {},
    h("button", { type: "button", "aria-current": c.id === chatId ? "true" : null, text: c.name,
      onclick: () => { location.hash = `#/chats/${c.id}`; } }))));
  const aside = h("aside", {}, h("h2", { text: "Assistants" }), newChat,
    chats.length ? chatList : h("p", { class: "muted", text: "No assistant yet." }));
  const conversation = h("section", { "aria-label": "Conversation" });
  main.append(h("h1", { text: chat ? chat.name : "Chat" }), pageSlot, h("div", { class: "chat" }, aside, conversation));
  if (!chat) {
    if (chatId) pageSlot.show({ message: "This assistant does not exist (or is not yours)." });
    conversation.append(h("p", { class: "muted", text: chats.length ? "Choose an assistant." : "Create an assistant to start chatting." }));
    return null;
  }

  // -- sessions -----------------------------------------------------------------------------
  const sessions = await api("GET", `/chats/${chat.id}/sessions`, { query: { page: 1, page_size: 100, orderby: "update_time", desc: true } });
  let current = sessions.find((s) => s.id === sessionId) || null;
  const sessionSlot = errorSlot();
  const sessionList = h("ul", { "aria-label": "Sessions" });
  function drawSessions() {
    sessionList.replaceChildren(...sessions.map((s) => {
      const remove = h("button", { type: "button", class: "small danger", text: "×", "aria-label": `Delete session ${s.name}` });
      remove.onclick = () => guarded(sessionSlot, remove, async () => {
        if (!(await confirmAction("Delete this session?", `“${s.name}” and its messages will be deleted.`))) return;
        await api("DELETE", `/chats/${chat.id}/sessions`, { body: { ids: [s.id] } });
        location.hash = `#/chats/${chat.id}`;
      });
      return h("li", {}, h("button", { type: "button", "aria-current": current?.id === s.id ? "true" : null, text: s.name,
        onclick: () => { location.hash = `#/chats/${chat.id}/${s.id}`; } }), remove);
    }));
  }
  drawSessions();
  const editChat = h("button", { type: "button", text: "Edit assistant", onclick: () => openForm(chat) });
  const deleteChat = h("button", { type: "button", class: "danger", text: "Delete assistant" });
  deleteChat.onclick = () => guarded(pageSlot, deleteChat, async () => {
    if (!(await confirmAction("Delete this assistant?", `“${chat.name}” and all its sessions will be deleted.`))) return;
    await api("DELETE", "/chats", { body: { ids: [chat.id] } });
    location.hash = "#/chats";
  });
  aside.append(h("h2", { text: "Sessions" }),
    h("button", { type: "button", text: "New session", onclick: () => { location.hash = `#/chats/${chat.id}`; } }),
    sessionList, sessionSlot, h("h2", { text: "Assistant" }),
    h("p", { class: "hint", text: `Model ${chat.llm_id || "default"} · ${chat.dataset_ids.length} dataset(s)${chat.prompt_config?.tone ? ` · tone ${chat.prompt_config.tone}` : ""}` }),
    h("div", { class: "actions" }, editChat, deleteChat));

  // -- conversation -------------------------------------------------------------------------
  const messages = h("div", { class: "messages", id: "messages", role: "log", "aria-label": "Messages", tabindex: 0 });
  const opener = chat.prompt_config?.prologue;
  const earlier = current ? current.messages : (opener ? [{ role: "assistant", content: opener }] : []);
  messages.append(...earlier.map(messageView));
  const question = h("textarea", { id: "chat-question", rows: 3, placeholder: "Ask a question (Enter sends, Shift+Enter adds a line)" });
  const send = h("button", { type: "submit", class: "primary", text: "Send" });
  const stop = h("button", { type: "button", text: "Stop", disabled: true });
  const askSlot = errorSlot();
  const composer = h("form", { class: "composer" }, h("label", { for: "chat-question", text: "Your question" }), question,
    askSlot, h("div", { class: "actions" }, send, stop));
  const sessionTitle = h("h2", { text: current ? current.name : "New session" });
  conversation.append(sessionTitle, messages, composer);
  messages.scrollTop = messages.scrollHeight;

  question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); composer.requestSubmit(); }
  });
  stop.onclick = () => controller?.abort();
  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = question.value.trim();
    if (!text || controller) return;
    ask(text);
  });

  async function ask(text) {
    askSlot.clear();
    question.value = "";
    messages.append(messageView({ role: "user", content: text }));
    const answerBox = h("div", { class: "text streaming" });
    const bubble = h("div", { class: "msg assistant", dataset: { role: "assistant" }, "aria-busy": "true" },
      h("span", { class: "who", text: "Assistant" }), answerBox);
    messages.append(bubble);
    messages.scrollTop = messages.scrollHeight;
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    let answer = "";
    let reference = null;
    let failure = null;
    try {
      const response = await fetch(apiUrl(`/chats/${chat.id}/completions`), {
        method: "POST", signal: controller.signal, headers: { ...authHeaders(), "Content-Type": "application/json" },
        body: JSON.stringify({ question: text, stream: true, session_id: current?.id || undefined }),
      });
      if (!(response.headers.get("Content-Type") || "").includes("text/event-stream")) {
        const envelope = await readEnvelope(response);
        throw new ApiError(envelope.message || `HTTP ${response.status}`, envelope.code);
      }
      await readEvents(response, (event) => {
        if (event.code !== 0) { failure = event.message; answer = event.data?.answer || answer; return; }
        if (event.data === true) return;
        answer = event.data.answer ?? answer;
        if (event.data.reference && Object.keys(event.data.reference).length) reference = event.data.reference;
        if (!current && event.data.session_id) adoptSession(event.data.session_id, text);
        answerBox.textContent = answer;
        messages.scrollTop = messages.scrollHeight;
      });
      if (failure) throw new ApiError(`The answer failed: ${failure}`, 500);
      bubble.dataset.done = "true";
    } catch (error) {
      if (error.name === "AbortError") {
        bubble.dataset.stopped = "true";
        answer = `${answer}${answer ? " " : ""}(stopped)`;
        announce("Answer stopped.");
      } else {
        askSlot.show(error);
        bubble.dataset.failed = "true";
      }
    } finally {
      controller = null;
      send.disabled = false;
      stop.disabled = true;
      bubble.removeAttribute("aria-busy");
      answerBox.classList.remove("streaming");
      answerBox.replaceChildren(...answerNodes(answer, reference));
      const sources = sourcesList(reference);
      if (sources) bubble.append(sources);
      question.focus();
    }
  }

  /** The first answer made a session: show it in the list without reloading the page. */
  function adoptSession(id, text) {
    current = { id, name: text.slice(0, 255), messages: [] };
    sessions.unshift(current);
    sessionTitle.textContent = current.name;
    drawSessions();
    history.replaceState(null, "", `#/chats/${chat.id}/${id}`);
  }

  question.dataset.autofocus = "true";
  return () => controller?.abort();
}
