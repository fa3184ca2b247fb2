"""Parse plain TOML tables into frozen dataclasses, with one-line errors naming file and field.

All user files (scenario, stress suite, study) are read once, at the edge, through
:func:`from_mapping`; inside the library nothing reads raw dicts. Field constraints live next to
the field as metadata so the dataclass is the single source of truth:

    horizon: int = field(default=16, metadata=meta("planning horizon in steps", ge=1, le=512))

Supported annotations: ``int``, ``float``, ``str``, ``bool``, ``Literal[...]``, ``X | None``,
``tuple[X, ...]``, ``dict[str, X]`` / ``dict[str, Any]``, and nested dataclasses.

A class whose keys moved may define ``retired_key(name, section) -> str | None``: an unknown key
it knows from before is then reported with where it went, not with the list of valid keys.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar, get_args, get_origin

from hplan.errors import ConfigError

T = TypeVar("T")


def meta(doc: str, *, ge: float | None = None, le: float | None = None, gt: float | None = None,
         lt: float | None = None) -> dict[str, Any]:
    """Field metadata: a docstring and optional numeric bounds checked at load time."""
    return {"doc": doc, "ge": ge, "le": le, "gt": gt, "lt": lt}


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning I/O and syntax errors into a one-line ConfigError."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except IsADirectoryError:
        raise ConfigError(str(path), "", "is a directory, expected a TOML file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(path), "", f"invalid TOML: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "", "not a UTF-8 text file") from None


def from_mapping(cls: type[T], data: Any, *, source: str, section: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys, wrong types and bad ranges are errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(source, section or "<root>", f"expected a table, got {_type_name(data)}")
    hints = typing.get_type_hints(cls, globalns=vars(sys.modules[cls.__module__]))
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        retired = getattr(cls, "retired_key", None)  # a key the class had before (PlannerConfig)
        note = retired(unknown[0], section) if retired is not None else None
        raise ConfigError(source, _join(section, unknown[0]),
                          note or f"unknown key (expected one of: {', '.join(sorted(fields))})")
    values: dict[str, Any] = {}
    for name, fld in fields.items():
        path = _join(section, name)
        if name not in data:
            if fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
                raise ConfigError(source, path, "missing required key")
            continue
        value = _coerce(hints[name], data[name], source, path)
        _check_bounds(fld.metadata, value, source, path)
        if isinstance(value, str) and not value.strip() and fld.default is dataclasses.MISSING:
            # a required string names something (a run, a scenario, a metric): blank names nothing,
            # and `name = ""` became an output folder named after nothing
            raise ConfigError(source, path, "must not be empty")
        values[name] = value
    try:
        obj = cls(**values)
    except (ValueError, TypeError) as err:  # __post_init__ cross-field checks
        raise ConfigError(source, section or "<root>", str(err)) from None
    return obj


def to_mapping(obj: Any) -> Any:
    """Inverse of :func:`from_mapping`: a TOML/JSON-friendly dict of a (nested) dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if getattr(obj, f.name) is not None}
    if isinstance(obj, (list, tuple)):
        return [to_mapping(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_mapping(v) for k, v in obj.items()}
    return obj


def defaults_of(**sections: Any) -> dict[str, dict[str, Any]]:
    """Section name → the JSON form of a config instance's fields (``defaults_of(model=ModelConfig())``),
    for :func:`with_new_defaults`."""
    return {name: json.loads(json.dumps(to_mapping(config))) for name, config in sections.items()}


def with_new_defaults(recorded: Any, current: Mapping[str, Any], defaults: Mapping[str, Mapping[str, Any]]) -> Any:
    """``recorded`` settings (sections of fields, as JSON) plus every field of ``current`` they lack
    where ``current`` has it at its default (``defaults``, from :func:`defaults_of`).

    Why: a field added to hplan defaults to the behaviour that came before it, so settings recorded
    before it existed (a dataset's manifest, a training run's config.json) are the same settings as
    ones that have it at its default; without this, every new field made every cached dataset and
    run "made with other settings"."""
    if not isinstance(recorded, dict):
        return recorded
    merged = json.loads(json.dumps(recorded))
    for section, section_defaults in defaults.items():
        have, wanted = merged.get(section), current.get(section)
        if not isinstance(have, dict) or not isinstance(wanted, Mapping):
            continue
        for key, value in wanted.items():
            if key not in have and key in section_defaults and json.loads(json.dumps(value)) == section_defaults[key]:
                have[key] = value
    return merged


def field_docs(cls: type) -> dict[str, str]:
    """Field name → docstring, for help texts and the README's file-format tables."""
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}


def coerce(hint: Any, value: Any, *, source: str, path: str) -> Any:
    """``value`` checked (and normalised) against annotation ``hint``, as :func:`from_mapping` does
    for one field; for files that are not dataclass tables (episode log lines)."""
    return _coerce(hint, value, source, path)


def _coerce(hint: Any, value: Any, source: str, path: str) -> Any:
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, source, path)
            except ConfigError as err:
                errors.append(err.message)
        raise ConfigError(source, path, " or ".join(errors))
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            raise ConfigError(source, path, f"must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, source=source, section=path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(source, path, f"expected a list, got {_type_name(value)}")
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, source, f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(source, path, f"expected a list of {len(args)} items, got {len(value)}")
        return tuple(_coerce(a, v, source, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(source, path, f"expected a list, got {_type_name(value)}")
        (arg,) = get_args(hint)
        return [_coerce(arg, v, source, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(source, path, f"expected a table, got {_type_name(value)}")
        args = get_args(hint)
        value_hint = args[1] if args else Any
        return {str(k): _coerce(value_hint, v, source, f"{path}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, path, f"expected true/false, got {_type_name(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, path, f"expected an integer, got {_type_name(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(source, path, f"expected a number, got {_type_name(value)}")
        if not math.isfinite(value):  # TOML allows inf and nan; no setting means either
            raise ConfigError(source, path, f"must be a finite number, got {value}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(source, path, f"expected a string, got {_type_name(value)}")
        return value
    raise TypeError(f"configio cannot coerce annotation {hint!r} at {path}")


def _check_bounds(metadata: Mapping[str, Any], value: Any, source: str, path: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    checks = (("ge", lambda b: value >= b, ">="), ("le", lambda b: value <= b, "<="),
              ("gt", lambda b: value > b, ">"), ("lt", lambda b: value < b, "<"))
    for key, ok, symbol in checks:
        bound = metadata.get(key)
        if bound is not None and not ok(bound):
            raise ConfigError(source, path, f"must be {symbol} {bound}, got {value}")
    if metadata.get("le") is None and metadata.get("lt") is None and abs(value) > MAX_MAGNITUDE:
        raise ConfigError(source, path, f"must be at most {MAX_MAGNITUDE:,.0f} in size (hplan's bound for a "
                                        f"setting without its own), got {value:g}")


MAX_MAGNITUDE = 1_000_000
"""Largest size of a number whose field declares no upper bound of its own. Why: a finite but absurd
value (``train.pred_weight = 1e300``, a guardrail weight of 1e30) passed ``scenario check`` and
broke training or planning later with a traceback; no hplan setting means anything past a million
(the largest default, the distance constraint weight, is 1,000)."""


def _join(section: str, name: str) -> str:
    return f"{section}.{name}" if section else name


def _type_name(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)
