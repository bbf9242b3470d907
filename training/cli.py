"""Command-line pieces shared by the trainer CLIs: options built from a Config dataclass, and the policy options.

A Config field is a command-line option when its metadata says so, `field(..., metadata=option("help"))`;
fields without it (test hooks, free-form notes, settings no CLI offers) keep their defaults. The option is
the field's name in --kebab-case unless `flag` names it, with the field's type and default and the given
help. A field without a default is a required option. Booleans are switches: `--name` when the default is
False, `--no-name` (or the given `flag`) when it is True; `bool | None` is `--name auto|on|off`, auto being
None. Options a CLI adds by hand under a field's own name (`add_policy_arguments`) fill that field too.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    ConfigT = TypeVar("ConfigT", bound=DataclassInstance)
else:
    ConfigT = TypeVar("ConfigT")

OPTION = "cli"
"""The metadata key of a field's command-line option."""
AUTO_ON_OFF: dict[str, bool | None] = {"auto": None, "on": True, "off": False}


@dataclass(frozen=True)
class Option:
    help: str
    flag: str | None = None
    """The option's name when it is not the field's in --kebab-case."""


def option(help: str, *, flag: str | None = None) -> dict[str, Any]:
    """Field metadata that makes the field a command-line option."""
    return {OPTION: Option(help, flag)}


Kind = Literal["value", "switch", "negated", "auto_on_off"]


@dataclass(frozen=True)
class _Spec:
    """How one field appears on the command line."""

    field: dataclasses.Field[Any]
    option: Option
    kind: Kind
    type: Any
    flag: str

    @property
    def dest(self) -> str:
        """The namespace attribute argparse derives from the flag."""
        return self.flag.removeprefix("--").replace("-", "_")


def _specs(config_class: type[DataclassInstance]) -> list[_Spec]:
    hints = typing.get_type_hints(config_class)
    specs = []
    for field in dataclasses.fields(config_class):
        if OPTION not in field.metadata:
            continue
        hint = hints[field.name]
        arguments = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        base = next(argument for argument in arguments if argument is not type(None))
        kind: Kind = "value"
        if hint is bool:
            if field.default is dataclasses.MISSING:
                raise TypeError(f"{config_class.__name__}.{field.name}: a switch needs a default")
            kind = "negated" if field.default else "switch"
        elif base is bool:
            kind = "auto_on_off"
        own = field.metadata[OPTION]
        name = field.name.replace("_", "-")
        flag = own.flag or (f"--no-{name}" if kind == "negated" else f"--{name}")
        specs.append(_Spec(field, own, kind, base, flag))
    return specs


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type[DataclassInstance]) -> None:
    """One option per field of `config_class` that has `option` metadata, in field order."""
    for spec in _specs(config_class):
        field, help = spec.field, spec.option.help
        if spec.kind in ("switch", "negated"):
            parser.add_argument(spec.flag, action="store_true", help=help)
        elif spec.kind == "auto_on_off":
            default = next(name for name, value in AUTO_ON_OFF.items() if value is field.default)
            parser.add_argument(spec.flag, choices=list(AUTO_ON_OFF), default=default, help=help)
        elif field.default is dataclasses.MISSING:
            parser.add_argument(spec.flag, type=spec.type, required=True, help=help)
        else:
            parser.add_argument(spec.flag, type=spec.type, default=field.default, help=help)


def config_from_arguments(config_class: type[ConfigT], arguments: argparse.Namespace, **fixed: Any) -> ConfigT:
    """The Config the parsed options describe; `fixed` sets fields the command line does not."""
    values = vars(arguments)
    settings: dict[str, Any] = {}
    specs = {spec.field.name: spec for spec in _specs(config_class)}
    for field in dataclasses.fields(config_class):
        spec = specs.get(field.name)
        if spec is None:
            if field.name in values:
                settings[field.name] = values[field.name]
            continue
        value = values[spec.dest]
        if spec.kind == "negated":
            value = not value
        elif spec.kind == "auto_on_off":
            value = AUTO_ON_OFF[value]
        settings[field.name] = value
    return config_class(**settings, **fixed)


def add_policy_arguments(p: argparse.ArgumentParser, *, policy_help: str) -> None:
    """--policy, the two reward models and --prompts: what every policy CLI samples from and scores with."""
    p.add_argument("--policy", type=Path, required=True, help=policy_help)
    p.add_argument("--reward-helpfulness", type=Path, required=True, help="Helpfulness reward-model directory.")
    p.add_argument("--reward-safety", type=Path, help="Safety reward-model directory (default: helpfulness only).")
    p.add_argument("--prompts", type=Path, required=True, help="JSONL: prompt (messages), is_safety, split.")
