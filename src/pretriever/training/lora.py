"""LoRA: low-rank adapters instead of full fine-tuning (Hu et al. 2022), over ``peft``.

Only the adapters train (about 1% of MiniLM's weights), which needs less memory and keeps the
base model's knowledge close. On save the adapters are merged into the weights, so the result is
a plain sentence-transformers model: nothing to install to load it, and no adapter that a later
tool could drop without saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pretriever.errors import ConfigError, MissingDependencyError


@dataclass(frozen=True)
class LoraConfig:
    """Adapter settings; ``r = 0`` disables LoRA (full fine-tuning)."""

    r: int = 0
    alpha: int = 16
    dropout: float = 0.1
    targets: str = "query,key,value,dense"

    def __post_init__(self) -> None:
        if self.r < 0 or self.alpha < 1 or not 0 <= self.dropout < 1:
            raise ConfigError("lora: r >= 0 (0 = off), alpha >= 1 and 0 <= dropout < 1 are required")

    @property
    def enabled(self) -> bool:
        return self.r > 0


def add_adapters(transformer: Any, config: LoraConfig) -> Any:
    """The transformers module wrapped with trainable LoRA adapters (the rest frozen)."""
    try:
        import peft
    except ImportError:
        raise MissingDependencyError("peft", extra="train", feature="LoRA fine-tuning") from None
    settings = peft.LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                               target_modules=[t.strip() for t in config.targets.split(",") if t.strip()])
    return peft.get_peft_model(transformer, settings)


def merge(wrapped: Any) -> Any:
    """The plain transformers module with the adapters merged into its weights."""
    return wrapped.merge_and_unload()


def trainable_share(module: Any) -> float:
    """Share of parameters that receive gradients."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return trainable / max(total, 1)
