"""The prompt layer of the chat pipeline (DESIGN.md, "A chat completion, end to end").

Everything DialogService and the gateway routes need to turn retrieved chunks, a conversation,
a tone and a chat's prompt config into model input, and to clean the model's citations:

- ``context``: ``kb_prompt`` (chunks → numbered knowledge blocks within a token budget) and
  ``message_fit_in`` (system prompt + history + question within the context window);
- ``system_prompt``: ``build_system_prompt`` and ``check_prompt_variables`` over RAGFlow's
  prompt config;
- ``tones``: ``TONES``, ``tone_instruction``; ``citations``: the ``[ID:n]`` instruction and repair;
- ``generator``: the LLM-backed ``full_question`` and ``keyword_extraction``;
- ``split_reasoning`` is the model layer's (``rag.llm.reasoning``), re-exported here; it returns
  ``(answer, reasoning)``.

Prompt texts are Markdown files in ``templates/``.
"""

from rag.llm.reasoning import split_reasoning
from rag.prompts.citations import (
    citation_ids,
    citation_prompt,
    repair_citations,
    split_partial_citation,
    strip_invalid_citations,
)
from rag.prompts.context import (
    blocks_bound,
    counted_contents,
    join_knowledge,
    kb_prompt,
    knowledge_blocks,
    message_fit_in,
    messages_bound,
    token_bound,
)
from rag.prompts.generator import chat_text, full_question, keyword_extraction
from rag.prompts.system_prompt import (
    MissingVariableError,
    PromptVariableError,
    VariablesNotInPromptError,
    build_system_prompt,
    check_prompt_variables,
)
from rag.prompts.tones import TONES, UnknownToneError, tone_instruction

__all__ = [
    "TONES",
    "MissingVariableError",
    "PromptVariableError",
    "UnknownToneError",
    "VariablesNotInPromptError",
    "blocks_bound",
    "build_system_prompt",
    "chat_text",
    "check_prompt_variables",
    "citation_ids",
    "citation_prompt",
    "counted_contents",
    "full_question",
    "join_knowledge",
    "kb_prompt",
    "knowledge_blocks",
    "keyword_extraction",
    "message_fit_in",
    "messages_bound",
    "repair_citations",
    "split_partial_citation",
    "split_reasoning",
    "strip_invalid_citations",
    "token_bound",
    "tone_instruction",
]
