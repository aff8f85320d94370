"""The model registry: explicit names, duplicates refused, overrides validated."""

from __future__ import annotations

import pytest

from model import registry
from model.network import DefectNet


def test_create_model_builds_registered_recipes_with_overrides():
    assert {"lite0_fpn", "tiny"} <= set(registry.list_models())
    net = registry.create_model("tiny", input_size=96, mask_stride=8)
    assert isinstance(net, DefectNet)
    assert net.input_size == 96 and net.mask_stride == 8


def test_unknown_names_and_overrides_are_errors():
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        registry.create_model("nope")
    with pytest.raises(TypeError, match="unknown model overrides"):
        registry.create_model("tiny", input_sise=64)


def test_register_model_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register_model("extra")(lambda **kw: DefectNet(encoder="tiny", input_size=64, **kw))
    assert "extra" in registry.list_models()
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model("extra")(lambda **kw: None)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model("tiny")(lambda **kw: None)
