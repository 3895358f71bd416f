"""Ragline's own requests-per-minute limit per (tenant, model).

LiteLLM's Router limits each model as a whole; a tenant's share is ours to enforce. A
sliding window of call times per key is exact and tiny at the rates involved (tens per
minute). Over the limit the call is refused at once with the wait the caller should take.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from rag.llm.errors import RateLimitError

WINDOW_SECONDS = 60.0


class TenantRateLimiter:
    """``admit(tenant, model)`` counts a call or raises RateLimitError; rpm <= 0 disables it."""

    def __init__(self, rpm: int, clock=time.monotonic) -> None:
        self.rpm = rpm
        self._clock = clock
        self._calls: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, tenant_id: str, model: str) -> None:
        if self.rpm <= 0:
            return
        now = self._clock()
        with self._lock:
            calls = self._calls.setdefault((tenant_id, model), deque())
            while calls and now - calls[0] >= WINDOW_SECONDS:
                calls.popleft()
            if len(calls) >= self.rpm:
                wait = WINDOW_SECONDS - (now - calls[0])
                raise RateLimitError(
                    f"Rate limit of {self.rpm} requests per minute reached for {model}; "
                    f"try again in {wait:.0f} s.",
                    model=model,
                    retry_after=wait,
                )
            calls.append(now)
