"""Scenario problems as one line each, `<file>: <key>: <what would be valid>, got <value>`, built
from pydantic's validation errors.

Each field of the scenario models carries a `Help`: what the field is for and what a valid value
is. The same text is the field's description in the JSON Schema and the message when a value is
refused, so the two never drift apart. Rules of a model that span several keys raise `problem`s
with their own message; `validated` lets a model validator report them together with the errors
of the fields, so every problem is listed at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NoReturn, get_args

from pydantic import BaseModel, GetJsonSchemaHandler, ValidationError
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError

_OWN = "scenario"  # the error type of `problem`: its message is final


@dataclass(frozen=True)
class Help:
    """What a field is for and what a valid value is ("a positive integer of at most 100")."""

    about: str
    valid: str
    missing: str = "is required"  # the message when a required key is left out
    item: str = ""  # what each item of a list must be, when one is not

    def __get_pydantic_json_schema__(self, schema: CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        out = handler(schema)
        out["description"] = f"{self.about}. Must be {self.valid}."
        return out


def got(value: object) -> str:
    return json.dumps(value, default=str)


def problem(message: str) -> PydanticCustomError:
    """A refusal whose message is final (it says what is valid and, if useful, what it got)."""
    return PydanticCustomError(_OWN, "{message}", {"message": message})


def at(loc: tuple[str | int, ...], message: str, value: object = None) -> InitErrorDetails:
    """A `problem` at a key of the model being validated (its own location is prefixed)."""
    return InitErrorDetails(type=problem(message), loc=loc, input=value)


def refuse(title: str, errors: list[InitErrorDetails]) -> NoReturn:
    raise ValidationError.from_exception_data(title, errors)


def validated(title: str, data: Any, handler: Any, rules: list[InitErrorDetails],
              skip: set[str] | frozenset[str] = frozenset()) -> Any:
    """`handler(data)` (a wrap validator's), raising its errors together with `rules`; errors of
    the keys in `skip` are left out (a rule said all there is to say about them)."""
    errors: list[InitErrorDetails] = []
    try:
        value = handler(data)
    except ValidationError as exc:
        errors = [_again(e) for e in exc.errors(include_url=False)
                  if not (e["loc"] and e["loc"][0] in skip)]
        value = None
    if errors or rules:
        refuse(title, errors + rules)
    return value


def _again(e: Any) -> InitErrorDetails:
    kind = problem(e["ctx"]["message"]) if e["type"] == _OWN else e["type"]
    return InitErrorDetails(type=kind, loc=e["loc"], input=e["input"], ctx=e.get("ctx", {}))


def given(model: type[BaseModel], data: dict[str, Any]) -> set[str]:
    """The fields of `model` whose key is in `data` (a file's keys are the fields' aliases)."""
    return {name for name, f in model.model_fields.items() if (f.alias or name) in data}


def problems(exc: ValidationError, model: type[BaseModel], where: str) -> list[str]:
    """Every error of a validation of `model` as `<where>: <key>: <message>`."""
    return [f"{where}: {_key(e['loc'])}: {_message(model, e)}"
            for e in exc.errors(include_url=False)]


def _key(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(model: type[BaseModel], e: Any) -> str:
    if e["type"] == _OWN:
        return str(e["ctx"]["message"])
    holder, info = _find(model, e["loc"])
    if e["type"] == "extra_forbidden" and holder is not None:
        keys = ", ".join(f.alias or n for n, f in holder.model_fields.items())
        return f"unknown key; valid keys here: {keys}"
    help_ = next((m for m in info.metadata if isinstance(m, Help)), None) if info else None
    if help_ is None:  # a field without Help: pydantic's own words
        return f"{e['msg']}, got {got(e['input'])}"
    if e["type"] == "missing":
        return help_.missing
    on_item = bool(e["loc"]) and isinstance(e["loc"][-1], int) and help_.item
    return f"must be {help_.item if on_item else help_.valid}, got {got(e['input'])}"


def _find(model: type[BaseModel], loc: tuple[str | int, ...]
          ) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """The model that holds the last key of `loc`, and that key's field (None if unknown)."""
    holder: type[BaseModel] | None = model
    info: FieldInfo | None = None
    for part in loc:
        if isinstance(part, int):  # an item of the list field `info`
            continue
        if info is not None:
            holder = _model_in(info.annotation)
        info = None
        if holder is not None:
            info = next((f for n, f in holder.model_fields.items() if (f.alias or n) == part),
                        None)
    return holder, info


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model class in a field's type (`DataSpec`, `tuple[Stage, ...]`, `X | None`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
