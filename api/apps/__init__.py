"""Route modules, one blueprint each, in the layout of DESIGN.md's ``api/apps/``."""

from quart import Blueprint

from api.apps import (
    chunk_app,
    conversation_app,
    intent_app,
    llm_app,
    messages_app,
    openai_app,
    system_app,
    ui_app,
    usage_app,
    ws_app,
)
from api.apps.sdk import chat, dataset, doc, metadata, retrieval, session

BLUEPRINTS: list[Blueprint] = [
    system_app.bp,
    dataset.bp,
    doc.bp,
    metadata.bp,
    chunk_app.bp,
    retrieval.bp,
    chat.bp,
    session.bp,
    session.related_questions_bp,
    openai_app.bp,
    conversation_app.bp,
    llm_app.bp,
    messages_app.bp,
    usage_app.bp,
    ws_app.bp,
    ui_app.bp,
    intent_app.bp,
]
