"""POST /api/v1/sessions/related_questions (RAGFlow v0.22-v0.27) and its later home
/api/v1/searchbots/related_questions: search questions related to a question.

The tenant's chat model writes them. The builtin extractive model only quotes retrieved text
and cannot write questions, so with it the answer is an empty list and a message saying why,
as retrieval's ``keyword`` step quietly does without keywords: never invented questions.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, g

from api.components import components
from api.db.services import retrieval_service
from api.errors import argument_error
from api.utils.api_utils import json_body, ok
from rag.llm.errors import LLMServiceError
from rag.prompts.related_questions import related_questions as write_related_questions

bp = Blueprint("related_questions", __name__)  # mounted under /api/v1 by ``session.v1_bp``

MAX_QUESTION_CHARS = 10_000
EXTRACTIVE_NOTE = ("The builtin extractive model cannot write questions, so there are no related questions; "
                   "configure an LLM provider to get them.")


class RelatedQuestionsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    question: str | None = Field(None, max_length=MAX_QUESTION_CHARS)
    industry: str | None = Field(None, max_length=255)


@bp.post("/sessions/related_questions")
@bp.post("/searchbots/related_questions")
async def related_questions() -> Response:
    body = await json_body(RelatedQuestionsRequest)
    if not (body.question or "").strip():
        raise argument_error("`question` is required.")
    llm = components().bundle(g.tenant_id, None, "chat")
    if llm.is_extractive:
        return ok([], message=EXTRACTIVE_NOTE)
    try:
        questions = await write_related_questions(llm, body.question or "", body.industry)
    except LLMServiceError as error:
        raise retrieval_service.model_failure(error, llm.model_name) from None
    return ok(questions)
