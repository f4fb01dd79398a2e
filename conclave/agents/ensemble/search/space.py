"""The search space: which layer choices an architecture search may combine, and one point of it.

A point (``Arch``) becomes an ordinary ensemble config (``Arch.config()``)::

    [generator × samples] → ( [critic] → [ranker top_k] → [fuser] ) × blocks → [verifier]

Intermediate fusers write ``samples`` candidates, the last one writes one. Points that describe the
same ensemble are written one way (``Arch.canonical``), so the search never evaluates one twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..config import ComponentSpec, EnsembleConfig, LayerSpec

__all__ = ["DIMENSIONS", "ORDERED", "Arch", "SearchSpace", "combinations"]

#: The dimensions of the space, in the order proposals draw them.
DIMENSIONS = ("generator", "samples", "critic", "ranker_top_k", "fuser", "verifier", "blocks", "judge")

#: Dimensions whose values are ordered (their distance is the difference of positions in the choice list).
ORDERED = ("samples", "ranker_top_k", "blocks")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _distinct(values: Sequence[Any], name: str) -> None:
    if len(set(map(repr, values))) != len(values):
        raise ValueError(f"{name}: choices must be distinct")


class SearchSpace(_Strict):
    """The layer choices the search may combine (each list: the values a dimension may take)."""

    generators: list[str] = Field(min_length=1, description="Models that may generate.")
    judges: list[str] | None = Field(
        default=None, min_length=1, description="Models for critic, ranker, fuser, verifier; default: generators."
    )
    samples: list[int] = Field(default_factory=lambda: [1, 2, 4, 8], min_length=1)
    critic: list[bool] = Field(default_factory=lambda: [False, True], min_length=1)
    ranker_top_k: list[int | None] = Field(
        default_factory=lambda: [None, 1, 3], min_length=1, description="None = no ranker."
    )
    fuser: list[bool] = Field(default_factory=lambda: [False, True], min_length=1)
    verifier: list[bool] = Field(default_factory=lambda: [False, True], min_length=1)
    blocks: list[int] = Field(
        default_factory=lambda: [1, 2], min_length=1, description="Critic/ranker/fuser blocks stacked."
    )
    temperature: float = Field(default=0.7, ge=0, le=2, description="Generators' temperature.")
    max_tokens: int = Field(default=512, ge=1, le=100_000, description="Generators' and fusers' max_tokens.")
    judge_max_tokens: int = Field(default=512, ge=1, le=100_000, description="Critic/ranker/verifier max_tokens.")

    @field_validator("samples")
    @classmethod
    def _samples(cls, v: list[int]) -> list[int]:
        for s in v:
            if not 1 <= s <= 128:
                raise ValueError(f"samples must be between 1 and 128, got {s}")
        _distinct(v, "samples")
        return v

    @field_validator("ranker_top_k")
    @classmethod
    def _top_k(cls, v: list[int | None]) -> list[int | None]:
        for k in v:
            if k is not None and k < 1:
                raise ValueError(f"ranker_top_k must be None or at least 1, got {k}")
        _distinct(v, "ranker_top_k")
        return v

    @field_validator("blocks")
    @classmethod
    def _blocks(cls, v: list[int]) -> list[int]:
        for b in v:
            if not 1 <= b <= 8:
                raise ValueError(f"blocks must be between 1 and 8, got {b}")
        _distinct(v, "blocks")
        return v

    @model_validator(mode="after")
    def _distinct_choices(self) -> SearchSpace:
        for name in ("generators", "judges", "critic", "fuser", "verifier"):
            value = getattr(self, name)
            if value is not None:
                _distinct(value, name)
        return self

    def choices(self) -> dict[str, list[Any]]:
        """Each dimension's values, in ``DIMENSIONS`` order."""
        return {
            "generator": list(self.generators),
            "samples": list(self.samples),
            "critic": list(self.critic),
            "ranker_top_k": list(self.ranker_top_k),
            "fuser": list(self.fuser),
            "verifier": list(self.verifier),
            "blocks": list(self.blocks),
            "judge": list(self.judges or self.generators),
        }


def combinations(choices: Mapping[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """Every combination of one value per dimension, the first dimension varying slowest."""
    out: list[dict[str, Any]] = [{}]
    for dim, values in choices.items():
        out = [{**o, dim: v} for o in out for v in values]
    yield from out


class Arch(_Strict):
    """One point of the search space."""

    generator: str
    samples: int
    critic: bool = False
    ranker_top_k: int | None = None
    fuser: bool = False
    verifier: bool = False
    blocks: int = 1
    judge: str

    def canonical(self, space: SearchSpace) -> Arch:
        """The same ensemble written one way: without a critic, ranker or fuser, blocks is the first
        choice; without any judging component, judge is the first judge."""
        upd: dict[str, Any] = {}
        if not (self.critic or self.ranker_top_k or self.fuser):
            upd["blocks"] = space.blocks[0]
            if not self.verifier:
                upd["judge"] = (space.judges or space.generators)[0]
        return self.model_copy(update=upd)

    def key(self) -> str:
        return json.dumps(self.model_dump(), sort_keys=True)

    def label(self) -> str:
        parts = [f"{self.samples}x{self.generator}"]
        block = [
            *(["critic"] if self.critic else []),
            *([f"rank{self.ranker_top_k}"] if self.ranker_top_k else []),
            *(["fuse"] if self.fuser else []),
        ]
        if block:
            parts.append(("(" + ">".join(block) + f")x{self.blocks}") if self.blocks > 1 else ">".join(block))
        if self.verifier:
            parts.append("verify")
        judged = self.critic or self.ranker_top_k or self.fuser or self.verifier
        return " > ".join(parts) + (f" [judge {self.judge}]" if judged else "")

    def config(self, space: SearchSpace, name: str = "searched") -> EnsembleConfig:
        t, mt, jt = space.temperature, space.max_tokens, space.judge_max_tokens
        layers: list[list[ComponentSpec]] = [
            [ComponentSpec(type="generator", model=self.generator, samples=self.samples, temperature=t, max_tokens=mt)]
        ]
        if self.critic or self.ranker_top_k or self.fuser:
            for b in range(self.blocks):
                if self.critic:
                    layers.append([ComponentSpec(type="critic", model=self.judge, temperature=0.0, max_tokens=jt)])
                if self.ranker_top_k:
                    layers.append(
                        [
                            ComponentSpec(
                                type="ranker", model=self.judge, top_k=self.ranker_top_k, temperature=0.0, max_tokens=jt
                            )
                        ]
                    )
                if self.fuser:
                    width = 1 if b == self.blocks - 1 else self.samples
                    layers.append(
                        [ComponentSpec(type="fuser", model=self.judge, samples=width, temperature=t, max_tokens=mt)]
                    )
        if self.verifier:
            layers.append([ComponentSpec(type="verifier", model=self.judge, temperature=0.0, max_tokens=jt)])
        return EnsembleConfig(name=name, description=self.label(), layers=[LayerSpec(components=c) for c in layers])
