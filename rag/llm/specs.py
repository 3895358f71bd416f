"""Model specs (limits, capabilities, prices) and request validation against them.

LiteLLM's bundled model map already knows context windows, output limits, capabilities and
prices of the hosted models, so we read it instead of retyping it. ``conf/models.yaml`` adds
what the map lacks: local and builtin models, factory-wide defaults (``"*@Ollama"``: free),
and fallbacks. An unknown price stays ``None``: cost is then reported as null, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import litellm
import yaml

from rag.llm.errors import ValidationError

DEFAULT_CONTEXT_WINDOW = 8192
DEFAULT_MAX_OUTPUT_TOKENS = 4096
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")
# Ranges OpenAI documents; providers with narrower ones say so in models.yaml.
PARAMETER_RANGES: dict[str, tuple[float, float]] = {
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
PASSED_THROUGH = ("stop", "seed", "response_format", "tools", "tool_choice")
# Facts about builtin models that no configuration file may lose.
BUILTIN_ENTRIES: dict[str, dict[str, Any]] = {
    "extractive@Builtin": {"extractive": True, "input_cost_per_token": 0.0, "output_cost_per_token": 0.0},
    "*@Builtin": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0},
}


@dataclass(frozen=True)
class ModelSpec:
    """What Ragline knows about one model; prices are USD per token, None when unknown."""

    name: str
    context_window: int = DEFAULT_CONTEXT_WINDOW
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
    streaming: bool = True
    vision: bool = False
    reasoning: bool = False
    tools: bool = False
    extractive: bool = False
    temperature_max: float = 2.0
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        if self.input_cost_per_token is None or self.output_cost_per_token is None:
            return None
        return prompt_tokens * self.input_cost_per_token + completion_tokens * self.output_cost_per_token


SPEC_FIELDS = {f.name for f in fields(ModelSpec)} - {"name"}


def spec_from_model_map(entry: dict[str, Any]) -> dict[str, Any]:
    """The fields of a LiteLLM model-map entry that ModelSpec holds (absent ones left out)."""
    values = {
        "context_window": entry.get("max_input_tokens") or entry.get("max_tokens"),
        "max_output_tokens": entry.get("max_output_tokens") or entry.get("max_tokens"),
        "vision": entry.get("supports_vision"),
        "reasoning": entry.get("supports_reasoning"),
        "tools": entry.get("supports_function_calling"),
        "input_cost_per_token": entry.get("input_cost_per_token"),
        "output_cost_per_token": entry.get("output_cost_per_token"),
    }
    return {key: value for key, value in values.items() if value is not None}


class ModelCatalog:
    """Spec lookup: defaults < ``*@factory`` in models.yaml < LiteLLM's map < the model's own entry."""

    def __init__(self, entries: dict[str, dict[str, Any]], fallbacks: dict[str, list[str]]) -> None:
        for name, entry in entries.items():
            unknown = set(entry) - SPEC_FIELDS
            if unknown:
                raise ValueError(f"models.yaml: {name} has unknown fields {sorted(unknown)}")
        self.entries = {name: {**BUILTIN_ENTRIES.get(name, {}), **entries.get(name, {})}
                        for name in {*BUILTIN_ENTRIES, *entries}}
        self.fallbacks = fallbacks

    @classmethod
    def load(cls, path: str | Path | None) -> ModelCatalog:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) if path else None
        data = data or {}
        return cls(entries=data.get("models") or {}, fallbacks=data.get("fallbacks") or {})

    def spec(self, model_name: str, factory: str, model_map_keys: list[str]) -> ModelSpec:
        values: dict[str, Any] = dict(self.entries.get(f"*@{factory}", {}))
        for key in model_map_keys:
            entry = litellm.model_cost.get(key)
            if entry:
                values.update(spec_from_model_map(entry))
                break
        values.update(self.entries.get(model_name, {}))
        return replace(ModelSpec(name=model_name), **values)


def _check_range(name: str, value: Any, low: float, high: float, model: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must be a number, got {value!r}.", model=model) from None
    if not low <= number <= high:
        raise ValidationError(f"{name}={number:g} is out of range for {model}: allowed {low:g} to {high:g}.",
                              model=model)
    return number


def validate_request(spec: ModelSpec, gen_conf: dict[str, Any] | None) -> dict[str, Any]:
    """The generation parameters to send: checked against the spec, max_tokens clipped.

    Keys the model layer does not know (UI-only settings RAGFlow clients send along) are
    dropped rather than forwarded, so a provider never rejects a request for them.
    """
    conf = {key: value for key, value in (gen_conf or {}).items() if value is not None}
    clean: dict[str, Any] = {}
    if "temperature" in conf:
        clean["temperature"] = _check_range("temperature", conf["temperature"], 0.0, spec.temperature_max, spec.name)
    for name, (low, high) in PARAMETER_RANGES.items():
        if name in conf:
            clean[name] = _check_range(name, conf[name], low, high, spec.name)
    if "max_tokens" in conf:
        wanted = int(_check_range("max_tokens", conf["max_tokens"], 1, float("inf"), spec.name))
        clean["max_tokens"] = min(wanted, spec.max_output_tokens)
    if "reasoning_effort" in conf:
        if not spec.reasoning:
            raise ValidationError(f"reasoning_effort is only accepted by reasoning models; {spec.name} is not one.",
                                  model=spec.name)
        if conf["reasoning_effort"] not in REASONING_EFFORTS:
            raise ValidationError(f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}.", model=spec.name)
        clean["reasoning_effort"] = conf["reasoning_effort"]
    clean.update({key: conf[key] for key in PASSED_THROUGH if key in conf})
    return clean
