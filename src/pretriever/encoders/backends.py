"""Choosing the inference path of a model: torch or OpenVINO, and at which precision.

One rule for every model kind (bi-encoder, cross-encoder), so that "auto" means the same
everywhere: on a GPU, torch fp16; on a CPU, a calibrated int8 OpenVINO model stored in the model
folder by ``pretriever optimize`` if there is one, else bf16 where the CPU computes it natively
(OpenVINO when installed, else torch), else torch fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pretriever._manifest import read_manifest
from pretriever.errors import ConfigError, MissingDependencyError

BACKENDS = ("auto", "torch", "openvino")
PRECISIONS = ("auto", "float32", "bfloat16", "float16", "int8")


def check_choice(backend: str, precision: str) -> None:
    """Refuse an unknown backend or precision, listing the valid ones."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")


def torch_device(device: str | None) -> str:
    """``device`` if given, else the best available accelerator, else the CPU."""
    if device:
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def saved_openvino(source: str | Path) -> dict[str, Any] | None:
    """The manifest of an OpenVINO model stored in a model folder by ``optimize``, if any."""
    from pretriever.encoders.openvino import OV_DIR, OV_FORMAT_VERSION, OV_KIND

    folder = Path(source) / OV_DIR
    if not (folder / "manifest.json").is_file():
        return None
    return read_manifest(folder, kind=OV_KIND, max_format_version=OV_FORMAT_VERSION, verify=False)


def resolve(backend: str, precision: str, *, device: str | None, source: str, model: str) -> tuple[str, str]:
    """The (backend, precision) actually used for ``backend``/``precision`` (either may be "auto")."""
    from pretriever.encoders.openvino import cpu_has_bf16, openvino_available

    check_choice(backend, precision)
    on_cpu = torch_device(device) == "cpu"
    saved = saved_openvino(source) if on_cpu else None
    saved_precision = saved["params"]["precision"] if saved else None
    if precision == "auto":
        if not on_cpu:
            precision = "float16"
        elif saved_precision and backend in ("auto", "openvino"):
            precision = saved_precision
        else:
            precision = "bfloat16" if cpu_has_bf16() else "float32"
    if backend == "auto":
        use_ov = on_cpu and openvino_available() and (precision == "int8" or cpu_has_bf16())
        backend = "openvino" if use_ov or precision == "int8" else "torch"
    if backend == "openvino" and not on_cpu:
        raise ConfigError("the OpenVINO backend runs on the CPU; use backend='torch' on a GPU")
    if precision == "int8" and (backend != "openvino" or saved_precision != "int8"):
        raise ConfigError(
            f"no int8 model in {source}: create one with `pretriever optimize {model} "
            "--dataset DATASET --precision int8`"
        )
    if backend == "openvino" and not openvino_available():
        raise MissingDependencyError("openvino", extra="openvino", feature="the OpenVINO backend")
    if precision == "float16" and backend != "torch":
        raise ConfigError("float16 is a GPU precision of the torch backend; use bfloat16 on a CPU")
    return backend, precision


def openvino_runner(source: str | Path, precision: str, module: Any, tokenizer: Any, max_length: int) -> Any:
    """A compiled OpenVINO model for ``precision``: the one stored in the folder when it matches
    (its checksums verified first), else converted now from the torch ``module``."""
    from pretriever.encoders.openvino import OV_DIR, OV_XML, OpenVINORunner, convert

    saved = saved_openvino(source)
    if saved is not None and saved["params"]["precision"] == precision:
        folder = Path(source) / OV_DIR
        read_manifest(folder, kind=saved["kind"], verify=True)
        float_ops_bf16 = bool(saved["params"].get("float_ops_bf16"))
        return OpenVINORunner(folder / OV_XML, precision, float_ops_bf16=float_ops_bf16)
    return OpenVINORunner(convert(module, tokenizer, max_length), precision)
