"""/v1/models: the model in service, and (admins) activating another model file without a restart.

Activation loads and verifies the new file first (model card, input, outputs, a test run); only a
model that passes replaces the running one, in a single reference swap, so in-flight gradings finish
on the model they started with and a broken file leaves the old model serving. It is recorded in the
database, and every other replica swaps the same file in within REFURBGRADE_MODEL_POLL_S, after checking
it itself (serving/activation.py).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from model.fine_pass import FINE_SUFFIX
from serving import activation, examples
from serving.apidocs import AUTH, errors, example
from serving.deps import AdminDep, ReaderDep, StateDep
from serving.errors import ApiError
from serving.predictor import Model, ModelLoadError
from serving.schemas import ActivateIn, ModelInfo, ModelsOut

router = APIRouter(prefix="/v1/models", tags=["models"])


def model_info(m: Model, active: bool = True) -> ModelInfo:
    return ModelInfo(
        name=m.card.name,
        version=m.card.version,
        sha256=m.sha256,
        path=m.path.name,
        input_size=m.card.input_size,
        architecture=m.card.architecture,
        created=m.card.created,
        metrics=m.card.metrics,
        active=active,
    )


@router.get(
    "",
    response_model=ModelsOut,
    responses={**example(examples.MODELS), **errors(*AUTH)},
    summary="The active model and the files available",
)
def list_models(state: StateDep, _principal: ReaderDep) -> ModelsOut:
    folder = state.settings.models_dir
    # A fine network (`NAME.fine.onnx`) is served beside its model, never alone: not a model to offer.
    files = folder.glob("*.onnx") if folder and folder.is_dir() else []
    available = sorted(p.name for p in files if not p.name.endswith(FINE_SUFFIX))
    return ModelsOut(active=model_info(state.slot.current), available=available)


@router.post(
    "/activate",
    response_model=ModelInfo,
    responses={
        **example(examples.MODEL_INFO, description="The model now serving"),
        **errors(
            *AUTH, "forbidden", "invalid_request", "invalid_model_path", "model_not_found", "invalid_model"
        ),
    },
    summary="Load, verify and atomically activate another model file (admin)",
)
def activate_model(state: StateDep, admin: AdminDep, body: ActivateIn) -> ModelInfo:
    folder = state.settings.models_dir.resolve()
    try:
        candidate = Path(body.path)
        candidate = (candidate if candidate.is_absolute() else folder / candidate).resolve()
    except (ValueError, OSError) as exc:  # a NUL in the path, a name the OS refuses
        raise ApiError(422, "invalid_model_path", f"not a usable file name: {exc}") from exc
    if folder not in candidate.parents or candidate.suffix != ".onnx":
        raise ApiError(422, "invalid_model_path", f"the model must be a .onnx file inside {folder.name}/")
    if candidate.name.endswith(FINE_SUFFIX):
        model_name = candidate.name.removesuffix(FINE_SUFFIX)
        raise ApiError(
            422,
            "invalid_model_path",
            f"{candidate.name} is a fine network: it is served beside {model_name}.onnx, not on its own",
        )
    if not candidate.is_file():
        raise ApiError(404, "model_not_found", f"no model file {candidate.name}")
    try:  # recorded in the database for every replica only once it loaded and passed its checks here
        model = activation.activate(state, candidate, admin.key_id)
    except ModelLoadError as exc:
        raise ApiError(422, "invalid_model", str(exc)) from exc
    return model_info(model)
