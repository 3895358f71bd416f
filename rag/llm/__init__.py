"""The model layer: chat, embedding and rerank models behind one registry (see DESIGN.md, Models).

Import the pieces from their modules; this package file only documents the map:
``registry`` (ModelRegistry: specs, validation, the LiteLLM Router, model objects),
``chat_model`` (LiteLLMChat, ExtractiveChat), ``rerank_model``, ``embedding_model``,
``errors`` (the typed exceptions and their translation), ``invoke`` (calling sync or async
model methods from async code), ``providers/`` (one module per factory).
"""
