"""Training configs: frozen dataclasses filled from a TOML/YAML/JSON file, then from overrides.

The CLI and the Python API fill the same dataclass: a file holds every setting, flags and
``--set key=value`` override single keys (dotted for nested groups, e.g. ``negatives.hard`` or
``lexical.weight``), and unknown keys are refused with the valid ones listed. A field whose
metadata names ``plugins`` (a function returning {name: class with an ``Options`` dataclass}) takes
one table per plug-in, keyed by the plug-in's name at the top level: ``[lexical]`` in TOML fills
``options["lexical"]`` with the lexical task's ``Options``. The resolved config is saved in the
model folder it produced.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Sequence
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
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
                import tomli as tomllib

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


def parse_assignments(assignments: Sequence[str]) -> dict[str, Any]:
    """``["lexical.weight=3", "tasks=lexical,ict"]`` -> {"lexical.weight": 3, "tasks": "lexical,ict"}:
    a value is read as JSON where it is JSON (numbers, true/false, null, quoted text), else as text."""
    out: dict[str, Any] = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes KEY=VALUE (e.g. lexical.weight=3), got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out[key.strip()] = value
    return out


def build_config(cls: type[T], file: str | Path | None = None, *, sets: Sequence[str] = (),
                 **overrides: Any) -> T:
    """``cls`` filled from ``file`` (if given), then from ``overrides`` (None values ignored), then
    from ``sets`` (``KEY=VALUE`` texts, as ``--set`` takes them); dotted keys address nested groups."""
    data: dict[str, Any] = read_config_file(file) if file else {}
    given = [(k, v) for k, v in overrides.items() if v is not None]  # a flag not given is None
    for key, value in [*given, *parse_assignments(sets).items()]:  # --set k=null is a value
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"'{part}' is a single setting, not a table: '{key}' cannot be set")
            node = child
        node[leaf] = value
    return fill(cls, data, where=str(file) if file else "config")


def fill(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """``cls`` from plain data, every key and type checked, nested dataclasses and plug-in tables
    filled recursively."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    plugin_field = next((f for f in fields.values() if "plugins" in f.metadata), None)
    plugins = plugin_field.metadata["plugins"]() if plugin_field is not None else {}
    unknown = sorted(k for k in data if k not in fields and k not in plugins)
    if unknown:
        valid = [n for n in fields if n != getattr(plugin_field, "name", None)] + sorted(plugins)
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name in plugins:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{name}' must be a table of {name}'s settings")
            options = fill(plugins[name].Options, value, f"{where}: {name}")
            values.setdefault(plugin_field.name, {})[name] = options
            continue
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{name}' must be a table of settings")
            # over this config's own default of the group (TrainConfig's loop has 3 epochs), so that
            # setting one key of a group keeps the others
            value = fill(hint, {**_settings_of(_default_of(fields[name])), **value}, f"{where}: {name}")
        elif plugin_field is not None and name == plugin_field.name:
            values.setdefault(name, {}).update(value)
            continue
        values[name] = _coerce(value, hint, f"{where}: '{name}'")
    missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required setting(s) {', '.join(missing)}")
    return cls(**values)


def _default_of(spec: dataclasses.Field) -> Any:
    """A field's default value (None when it has none)."""
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return None if spec.default is dataclasses.MISSING else spec.default


def _settings_of(config: Any) -> dict[str, Any]:
    """A dataclass instance's fields as a dict, one level deep ({} for None)."""
    if config is None:
        return {}
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


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
