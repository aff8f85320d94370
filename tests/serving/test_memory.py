"""A grading process turns off NumPy's huge-page hint for large arrays, unless the operator chose."""

from __future__ import annotations

import pytest
from numpy._core import multiarray

from serving.memory import ENV, no_hugepage_hint


@pytest.fixture
def hint():
    """NumPy's hint as it was before the test, put back after it."""
    before = multiarray._get_madvise_hugepage()
    yield
    multiarray._set_madvise_hugepage(before)


def test_the_hint_is_turned_off_unless_the_operator_set_numpys_switch(hint, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    multiarray._set_madvise_hugepage(True)
    assert no_hugepage_hint() is True
    assert multiarray._get_madvise_hugepage() is False
    # NUMPY_MADVISE_HUGEPAGE=1: the operator wants the hint, and it stays as NumPy set it at import.
    multiarray._set_madvise_hugepage(True)
    monkeypatch.setenv(ENV, "1")
    assert no_hugepage_hint() is False
    assert multiarray._get_madvise_hugepage() is True
    monkeypatch.setenv(ENV, "0")
    assert no_hugepage_hint() is True


def test_the_service_and_the_offline_grader_start_without_it(hint, monkeypatch, settings, tmp_path):
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.batch_grader import run_batch
    from serving.photo_batch import Batch

    monkeypatch.delenv(ENV, raising=False)
    multiarray._set_madvise_hugepage(True)
    with TestClient(create_app(settings)):
        assert multiarray._get_madvise_hugepage() is False
    multiarray._set_madvise_hugepage(True)
    code = run_batch(Batch(()), model_path=tmp_path / "missing.onnx")
    assert code == 2  # no model there: refused, after the switch
    assert multiarray._get_madvise_hugepage() is False


def test_a_regrading_worker_loads_its_model_without_it(hint, monkeypatch, model_path):
    from serving import regrade

    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(regrade, "_MODELS", {})  # loaded afresh here, whatever other tests loaded
    multiarray._set_madvise_hugepage(True)
    assert regrade.job_model(str(model_path), 1, fine=False) is not None
    assert multiarray._get_madvise_hugepage() is False
