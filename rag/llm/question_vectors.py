"""Question embeddings remembered per tenant and model, most recently used kept.

Users ask the same questions again (a FAQ, a dashboard's fixed prompts, a retried request), and
embedding even a short question costs the local model ~10 ms of a core: more than the search
it feeds. A vector depends only on the model and the text, so a remembered one is exact. Keys
carry the tenant so no tenant's questions are visible through another's timing.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

DEFAULT_ENTRIES = 10_000  # ~1.5 KB each for a 384-dimension model: ~15 MB at most


class QuestionVectors:
    """An LRU of ``(tenant, model, question) -> (vector, tokens)``; ``entries`` 0 keeps nothing.

    Used from the event loop only, so it needs no lock.
    """

    def __init__(self, entries: int = DEFAULT_ENTRIES) -> None:
        self.entries = entries
        self._vectors: OrderedDict[tuple[str, str, str], tuple[np.ndarray, int]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, tenant_id: str, model_name: str, question: str) -> tuple[np.ndarray, int] | None:
        key = (tenant_id, model_name, question)
        found = self._vectors.get(key)
        if found is None:
            self.misses += 1
            return None
        self._vectors.move_to_end(key)
        self.hits += 1
        return found

    def put(self, tenant_id: str, model_name: str, question: str, vector: np.ndarray, tokens: int) -> None:
        if self.entries <= 0:
            return
        vector = np.array(vector, dtype=np.float32)  # a private, read-only copy
        vector.flags.writeable = False
        self._vectors[(tenant_id, model_name, question)] = (vector, tokens)
        self._vectors.move_to_end((tenant_id, model_name, question))
        while len(self._vectors) > self.entries:
            self._vectors.popitem(last=False)

    def __len__(self) -> int:
        return len(self._vectors)
