"""The model registry (torch): named network recipes and the one way to build them, `create_model`.

Explicit, not import-time magic: every recipe is registered in this module with `register_model`, which
raises on a duplicate name, so two recipes can never silently shadow each other. Checkpoints store the
recipe name and its overrides, so a checkpoint rebuilds exactly the network it was trained as.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from model.network import DefectNet

ModelFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    def decorate(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered ({_REGISTRY[name].__qualname__})")
        _REGISTRY[name] = factory
        return factory

    return decorate


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model; `overrides` replace the recipe's defaults (unknown keys are errors)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}") from None
    return factory(**overrides)


def _recipe(defaults: dict[str, Any]) -> ModelFactory:
    def factory(**overrides: Any) -> nn.Module:
        unknown = set(overrides) - set(defaults)
        if unknown:
            raise TypeError(f"unknown model overrides {sorted(unknown)}; allowed: {sorted(defaults)}")
        return DefectNet(**{**defaults, **overrides})

    return factory


# The production recipe: pretrained EfficientNet-Lite0, 384 px input, masks at stride 4 (96 x 96).
# Stride 4 rather than 8: a 0.2 mm hairline on a 150 mm phone filling ~330 px is ~0.5 px wide, and a
# stride-8 cell (~3.6 mm) merges neighbouring scratches and loses short ones; stride 2 cost more
# latency than it gave (see README "Recipe log").
register_model("lite0_fpn")(
    _recipe(
        dict(
            encoder="lite0",
            pretrained=True,
            input_size=384,
            mask_stride=4,
            decoder_channels=64,
            freeze_blocks=0,
            dropout=0.2,
        )
    )
)

# A random-init miniature with the same heads and outputs: tests and smoke runs only.
register_model("tiny")(
    _recipe(
        dict(
            encoder="tiny",
            pretrained=False,
            input_size=64,
            mask_stride=4,
            decoder_channels=16,
            freeze_blocks=0,
            dropout=0.0,
        )
    )
)
