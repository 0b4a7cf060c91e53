"""Training configs: frozen dataclasses filled from a TOML/YAML file, then from overrides.

The CLI and the Python API fill the same dataclass: a file holds every setting, flags override
single keys (dotted for nested groups, e.g. ``negatives.hard``), and unknown keys are refused with
the valid ones listed. The resolved config is saved in the model folder it produced.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, TypeVar

from pretriever.errors import ConfigError, DataFormatError, DataNotFoundError

T = TypeVar("T")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A config file as a dict: TOML (.toml), YAML (.yaml/.yml) or JSON (.json)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path}: use .toml, .yaml or .json")
    except ConfigError:
        raise
    except Exception as exc:  # each parser has its own error type; all mean "not valid"
        line = getattr(exc, "lineno", None) or getattr(getattr(exc, "problem_mark", None), "line", None)
        raise DataFormatError(path, line, f"not valid {suffix[1:].upper()}: {exc}",
                              "fix the syntax at that line") from None
    if not isinstance(data, dict):
        raise DataFormatError(path, None, "the top level must be a table of settings", "write key = value")
    return data


def build_config(cls: type[T], file: str | Path | None = None, **overrides: Any) -> T:
    """``cls`` filled from ``file`` (if given), then from ``overrides`` (None values ignored; dotted
    keys address nested groups)."""
    data: dict[str, Any] = read_config_file(file) if file else {}
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return _fill(cls, data, where=str(file) if file else "config")


def _fill(cls: type[T], data: dict[str, Any], where: str) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{name}' must be a table of settings")
            value = _fill(hint, value, f"{where}: {name}")
        values[name] = _coerce(value, hint, f"{where}: '{name}'")
    missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required setting(s) {', '.join(missing)}")
    return cls(**values)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check a value against a simple type hint (int, float, str, bool, X | None)."""
    if dataclasses.is_dataclass(hint):
        return value
    args = typing.get_args(hint)
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"{where} must not be empty")
    options = [a for a in args if a is not type(None)] or [hint]
    for option in options:
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option in (str, bool) and isinstance(value, option):
            return value
    names = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ConfigError(f"{where} must be {names}, got {value!r}")


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain data, for manifests and checkpoint fingerprints."""
    return dataclasses.asdict(config)
