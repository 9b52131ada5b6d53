"""Command-line options generated from a pydantic model's fields, so each flag's help is the field's
description, written once (`search` from `RunConfig`, `profile`'s limits from `Budget`).

A field `budget_evals` is `--budget-evals`; a field a cost budget names (`sram`, `flash`, `macs`) is
`--budget-sram` and so on. Every value goes to the model as the user wrote it ("5M", "64KB", "8h"),
and the model checks it, so a bad value is one line naming its flag.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
from pydantic import BaseModel, BeforeValidator, ValidationError
from pydantic.fields import FieldInfo

from tinyarch.core.budget import COST_BUDGETS

_METAVARS = {int: "<int>", float: "<float>", Path: "<path>"}


def flag(field: str) -> str:
    """The option that sets `field`."""
    if field in COST_BUDGETS.values():
        return f"--budget-{field}"
    return "--" + field.replace("_", "-")


def _type(annotation: Any) -> Any:
    """`X` of `X | None`."""
    if get_origin(annotation) in (Union, types.UnionType):
        others = [a for a in get_args(annotation) if a is not type(None)]
        return others[0] if len(others) == 1 else annotation
    return annotation


def _metavar(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    kind = _type(field.annotation)
    if get_origin(kind) is Literal:
        return f"<{'|'.join(map(str, get_args(kind)))}>"
    before = any(isinstance(m, BeforeValidator) for m in field.metadata) or any(
        name in d.info.fields and d.info.mode == "before"
        for d in model.__pydantic_decorators__.field_validators.values()
    )
    return "<str>" if before else _METAVARS.get(kind, "<str>")  # a "before" validator reads text ("5M", "8h")


def _help(field: FieldInfo, default: Any) -> str:
    """The field's description as a sentence, with the model's default (the option's own is None: unset)."""
    text = field.description or ""
    text += "." if text and not text.endswith(".") else ""
    return text + (f" \\[default: {default}]" if default is not None else "")


def _option(model: type[BaseModel], name: str, field: FieldInfo, aliases: Iterable[str]) -> inspect.Parameter:
    is_bool = _type(field.annotation) is bool
    names = [f"{flag(name)}/--no-{flag(name)[2:]}" if is_bool else flag(name), *aliases]
    option = typer.Option(
        *names,
        help=_help(field, None if field.is_required() else field.default),
        metavar=None if is_bool else _metavar(model, name, field),
        show_default=False,
    )
    kind = bool if is_bool else str
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind | None, option]
    )


def model_options(
    model: type[BaseModel], aliases: Mapping[str, Iterable[str]] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command an option per field of `model`; the command receives the ones the user gave as
    `given` (field -> value as written), after its own parameters. `aliases`: more names of a field's flag."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "given"]
        fields = model.model_fields
        generated = [_option(model, name, f, (aliases or {}).get(name, ())) for name, f in fields.items()]

        @functools.wraps(command)
        def with_options(**kwargs: Any) -> Any:
            values = {name: kwargs.pop(name, None) for name in fields}
            return command(given={k: v for k, v in values.items() if v is not None}, **kwargs)

        with_options.__signature__ = inspect.Signature([*own, *generated])  # type: ignore[attr-defined]
        with_options.__annotations__ = {}
        return with_options

    return decorate


def option_errors(error: ValidationError, given: Mapping[str, Any]) -> list[str]:
    """One line per problem of a model built from `given` flags (and a file): "--flag: problem" for a flag,
    "field: problem" for a value that came from a file."""
    lines = []
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else ""
        where = flag(field) if field in given else field or "config"
        lines.append(f"{where}: {problem['msg'].removeprefix('Value error, ')}")
    return lines
