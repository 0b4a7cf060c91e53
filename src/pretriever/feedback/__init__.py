"""Pseudo-relevance feedback: the top documents of a first search reshape the query, no labels.

One method a file, registered by name in ``METHODS``: ``rm3`` (lexical, for BM25) and ``rocchio``
(vector, for dense indexes). An index takes its method's options object (``BM25Index(feedback=
RM3())``, ``FlatIndex(encoder, feedback=Rocchio())``) and records them in its manifest; the
command line spells them ``--prf rm3`` or ``--prf rm3:fb_docs=5,fb_terms=20``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pretriever.errors import ConfigError
from pretriever.feedback.rm3 import RM3
from pretriever.feedback.rocchio import Rocchio

METHODS: dict[str, type] = {"rm3": RM3, "rocchio": Rocchio}
Feedback = RM3 | Rocchio

__all__ = ["METHODS", "RM3", "Feedback", "Rocchio", "feedback_from_dict", "parse_feedback"]


def _options(cls: type, values: dict[str, Any], where: str) -> Any:
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown {cls.name} option(s) {', '.join(unknown)}; valid: {', '.join(fields)}"
        )
    return cls(**values)


def parse_feedback(text: str | None) -> Feedback | None:
    """``"rm3"``, ``"rocchio:fb_docs=5,beta=0.3"`` or ``"none"`` -> an options object (or None)."""
    if text is None or text.strip().lower() in ("", "none"):
        return None
    name, _, rest = text.strip().partition(":")
    cls = METHODS.get(name.lower())
    if cls is None:
        raise ConfigError(f"unknown feedback method '{name}'; choose one of {', '.join(METHODS)} or none")
    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"feedback option '{item}' must be KEY=VALUE, e.g. {name}:fb_docs=5")
        values[key.strip()] = value.strip()
    typed = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            raw = values.pop(f.name)
            try:
                typed[f.name] = int(raw) if f.type in ("int", int) else float(raw)
            except ValueError:
                raise ConfigError(f"feedback option {f.name}={raw}: expected a number") from None
    return _options(cls, {**typed, **values}, f"--prf {text}")


def feedback_from_dict(data: dict[str, Any] | None) -> Feedback | None:
    """The options recorded in a manifest (``to_dict``) back as an object."""
    if not data:
        return None
    data = dict(data)
    name = data.pop("method", None)
    if name not in METHODS:
        raise ConfigError(f"unknown feedback method '{name}' in a manifest; known: {', '.join(METHODS)}")
    return _options(METHODS[name], data, "manifest")
