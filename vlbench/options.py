"""Fill typed dataclasses from plain mappings (YAML, CLI), validated once.

Unknown keys and values outside a `Literal` are errors that list what is allowed. A dataclass
checks its own ranges in `__post_init__` with `check`, so a bad value is refused while the
configuration is resolved, before anything is written or loaded.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

from vlbench.errors import VlbenchError
from vlbench.suggest import unknown_name_message

T = TypeVar("T")


class OptionError(ValueError):
    """A value outside its allowed range, raised by an options dataclass's `__post_init__`."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def check(condition: bool, field: str, problem: str) -> None:
    """Refuse the value of `field` with `problem` (e.g. "must be at least 1, got -3") unless `condition`."""
    if not condition:
        raise OptionError(field, problem)


def finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def build(cls: type[T], values: Mapping[str, Any] | None, where: str) -> T:
    """An instance of dataclass `cls` from `values`; `where` names the source in errors."""
    values = dict(values or {})
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    unknown = [key for key in values if key not in fields]
    if unknown:
        raise VlbenchError(f"{where}: " + unknown_name_message("key", unknown[0], list(fields)))
    try:
        hints = typing.get_type_hints(cls)
    except NameError as error:  # an annotation naming something imported only for type checkers
        raise VlbenchError(f"{where}: the annotations of {cls.__module__}.{cls.__qualname__} cannot be resolved ({error}): vlbench reads them to check option values, so import what they name at run time, not only under TYPE_CHECKING") from None
    converted = {key: coerce(value, hints[key], f"{where}.{key}") for key, value in values.items()}
    try:
        return cls(**converted)
    except OptionError as error:
        raise VlbenchError(f"{where}.{error.field}: {error.problem}") from None
    except (TypeError, ValueError) as error:
        raise VlbenchError(f"{where}: {error}") from None


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """`value` checked against (and where safe converted to) `annotation`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (arg for arg in args if arg is not type(None)):
            try:
                return coerce(value, option, where)
            except VlbenchError as error:
                errors.append(str(error))
        raise VlbenchError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {annotation}")
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(arg) for arg in args)
            raise VlbenchError(f"{where}: {value!r} is not allowed; choose one of {allowed}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise VlbenchError(f"{where}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        items = [coerce(item, item_type, f"{where}[{index}]") for index, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping):
            raise VlbenchError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise VlbenchError(f"{where}: expected true or false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise VlbenchError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)) and (annotation is float or float(value).is_integer()):
            return annotation(value)
        if isinstance(value, str):
            try:
                return annotation(value)
            except ValueError:
                pass
        raise VlbenchError(f"{where}: expected {annotation.__name__}, got {value!r}")
    if annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise VlbenchError(f"{where}: expected a string, got {value!r}")
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, Mapping):
            raise VlbenchError(f"{where}: expected a mapping, got {value!r}")
        return build(annotation, value, where)
    return value


ADDED_LATER = {"added_later": True}  # field metadata: see `as_dict`


def as_dict(instance: Any) -> dict[str, Any]:
    """A dataclass instance as plain data (lists for tuples), for records and hashing. A field
    declared with `metadata=ADDED_LATER` is left out at its default, so that runs stored before
    the option existed keep their configuration ids and matcher fingerprints."""
    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        return value

    data = plain(dataclasses.asdict(instance))
    for option in dataclasses.fields(instance):
        if option.metadata.get("added_later") and getattr(instance, option.name) == option.default:
            del data[option.name]
    return data
