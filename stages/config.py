"""One way to configure a stage: frozen config dataclasses filled from params.yaml and the command line.

A stage names its config as `Part`s: a params group and the dataclass that reads it (a group may be
read by several dataclasses, e.g. `split` = SplitConfig + SplitPaths). Every field is a key of its
group and a command-line flag (`image_size` -> `--image-size`):
  - the default lives only in the dataclass; a field without one (an output path) must be set in
    params.yaml or on the command line;
  - its help text sits beside it: `config.knob(default, "help", **limits)` (metadata["help"]);
  - metadata may add `min`, `max` (inclusive), `above`, `below` (exclusive), `choices`; `cli_only`
    for a flag that is no params key (an input another stage writes: dvc.yaml's `cmd` passes it from
    that stage's group, so no stage reads another stage's group); `group` to read a group shared by
    several stages (SHARED_GROUPS, never another stage's own); `flag` to name the flag (False: none);
  - a field whose type is a dataclass is flattened: its fields are keys of the same group.
Values are converted to the field's type (YAML and `dvc exp run -S` may give "5e-5" as a string;
a flag's text is read as YAML); an unknown key, a wrong type, a number that is not finite (NaN,
infinity) or a value out of range is a ConfigError naming group and key. Command-line values win over params.yaml.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

from stages import errors
from stages.common import load_params

DEFAULT_PARAMS = "params.yaml"
MAX_IMAGE_SIZE = 4096   # ceiling of pack.image_size and vision.image_size: 16 images of 4096² RGB are 3 GB as floats
SHARED_GROUPS = ("releases",)   # params groups several stages read (split and pack): facts about the releases


class ConfigError(errors.ConfigError):
    """A params or command-line value that cannot configure the stage; the message names the key."""


@dataclass(frozen=True)
class Part:
    group: str     # the params group this dataclass reads (its own keys)
    cls: type      # a dataclass


@dataclass(frozen=True)
class Key:
    """One configurable leaf: `group.key`, the field it fills and its flag."""
    part: int                      # index of its Part
    path: tuple[str, ...]          # field names from the Part's dataclass down (nested dataclasses)
    group: str                     # where the value is read: its Part's group or a SHARED_GROUPS one
    key: str
    type: Any
    default: Any                   # dataclasses.MISSING when none
    help: str
    meta: dict

    @property
    def name(self) -> str:
        return f"{self.group}.{self.key}"


# ---------------------------------------------------------------- describing a dataclass

def knob(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING,
         **meta: Any) -> Any:
    """A config field with its help text beside it: `image_size: int = knob(384, "side of ...", min=1)`.

    `meta` holds the limits (`min`, `max`, `above`, `below`, `choices`) and `cli_only`/`flag`; no
    default (and no `factory`) makes a field that params.yaml or the command line must set."""
    return dataclasses.field(default=default, default_factory=factory, metadata={"help": help, **meta})


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def keys_of(parts: Sequence[Part]) -> list[Key]:
    return [key for i, part in enumerate(parts) for key in _keys(part.cls, i, part.group, ())]


def _keys(cls: type, part: int, group: str, prefix: tuple[str, ...]) -> Iterator[Key]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _keys(hints[f.name], part, group, prefix + (f.name,))
            continue
        meta = dict(f.metadata)
        yield Key(part=part, path=prefix + (f.name,), group=meta.get("group", group), key=f.name,
                  type=hints[f.name], default=field_default(f), help=meta.get("help", ""),
                  meta=meta)


# ---------------------------------------------------------------- converting values

def _optional(tp: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), len(args) < len(typing.get_args(tp))
    return tp, tp is Any


def convert(value: Any, tp: Any, name: str) -> Any:
    """`value` as type `tp`, or a ConfigError naming `name`."""
    tp, nullable = _optional(tp)
    if value is None:
        if nullable:
            return None
        raise ConfigError(f"{name}: null is not allowed")
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name}: {value!r} is not true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return int(value.strip())
        raise ConfigError(f"{name}: {value!r} is not an integer")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):   # YAML 1.1 reads 5e-5 (no dot) as a string; `dvc exp run -S` writes it so
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is None:
            raise ConfigError(f"{name}: {value!r} is not a number")
        if not math.isfinite(number):
            raise ConfigError(f"{name}: {value!r} is not a finite number")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name}: {value!r} is not a string")
    if tp is Path:
        if isinstance(value, (str, Path)) and str(value):
            return Path(value)
        raise ConfigError(f"{name}: {value!r} is not a path")
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: {value!r} is not a mapping")
        return {convert(k, key_type, name): convert(v, value_type, f"{name}.{k}") for k, v in value.items()}
    if origin in (tuple, list):
        item_type = typing.get_args(tp)[0]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: {value!r} is not a list")
        return origin(convert(v, item_type, f"{name}[{i}]") for i, v in enumerate(value))
    return value


BOUNDS = {"min": (">=", lambda v, b: v >= b), "max": ("<=", lambda v, b: v <= b),
          "above": (">", lambda v, b: v > b), "below": ("<", lambda v, b: v < b)}


def check(value: Any, key: Key) -> None:
    """The metadata limits; each is asked whether the value is inside, so NaN never passes one."""
    meta = key.meta
    if value is None:
        return
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{key.name}: {value!r} is not one of {', '.join(map(str, meta['choices']))}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key.name}: {value!r} is not a finite number")
    for bound, (sign, inside) in BOUNDS.items():
        if bound in meta and not inside(value, meta[bound]):
            raise ConfigError(f"{key.name}: {value!r} must be {sign} {meta[bound]}")


def from_text(text: str, key: Key) -> Any:
    """A flag's text: kept as is for strings and paths, else read as YAML (numbers, null, mappings,
    lists; a single item given for a list is a list of one)."""
    base, nullable = _optional(key.type)
    if base in (str, Path):
        return None if nullable and text == "null" else text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    if typing.get_origin(base) in (tuple, list) and not isinstance(value, list) and value is not None:
        return [value]   # `--image-dirs DIR`: one item; `--image-dirs '[A, B]'`: several
    return value


# ---------------------------------------------------------------- building configs

def build(parts: Sequence[Part], params: dict[str, Any], overrides: dict[str, Any] | None = None,
          flags: dict[str, str] | None = None) -> list:
    """One config object per Part from `params` (all groups) and `overrides` ({"group.key": value}).

    `flags` ({"group.key": "--flag"}) only words the error for a missing value."""
    overrides, flags = overrides or {}, flags or {}
    keys = keys_of(parts)
    check_unknown(parts, keys, params)
    values: list[dict] = [{} for _ in parts]
    for key in keys:
        group = params.get(key.group) or {}
        if key.name in overrides:
            raw = overrides[key.name]
        elif key.key in group and not key.meta.get("cli_only"):
            raw = group[key.key]
        elif key.default is not dataclasses.MISSING:
            raw = key.default
        else:
            raise ConfigError(missing(key, flags))
        value = convert(raw, key.type, key.name)
        check(value, key)
        _nest(values[key.part], key.path, value)
    return [_instantiate(part.cls, v, part.group) for part, v in zip(parts, values)]


def missing(key: Key, flags: dict[str, str]) -> str:
    """The one line for a value nobody gave: an input another stage writes comes only as a flag."""
    flag = flags.get(key.name)
    if key.meta.get("cli_only"):
        return f"{flag or key.key} is not given: {key.help or key.key} (dvc.yaml's cmd passes it)"
    return f"{key.name} is not set: set it in params.yaml" + (f" or give {flag}" if flag else "")


def check_unknown(parts: Sequence[Part], keys: list[Key], params: dict[str, Any]) -> None:
    for group in dict.fromkeys([part.group for part in parts] + [key.group for key in keys]):
        values = params.get(group)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"params group '{group}' is not a mapping")
        known = {k.key for k in keys if k.group == group and not k.meta.get("cli_only")}
        unknown = sorted(set(values) - known, key=str)
        if unknown:
            raise ConfigError(f"params group '{group}': unknown key{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(map(str, unknown))}")


def _nest(values: dict, path: tuple[str, ...], value: Any) -> None:
    for name in path[:-1]:
        values = values.setdefault(name, {})
    values[path[-1]] = value


def _instantiate(cls: type, values: dict, group: str):
    hints = typing.get_type_hints(cls)
    kwargs = {name: _instantiate(hints[name], v, group) if isinstance(v, dict) and dataclasses.is_dataclass(hints[name])
              else v for name, v in values.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        message = str(err)
        raise ConfigError(message if message.startswith(f"{group}.") or message.startswith(f"{group}:")
                          else f"{group}: {message}") from None


# ---------------------------------------------------------------- the command line

def flag_names(keys: list[Key]) -> dict[str, str]:
    """{"group.key": "--flag"}: `--key`, or `--group-key` where two groups share the key."""
    counts: dict[str, int] = {}
    for key in keys:
        counts[key.key] = counts.get(key.key, 0) + 1
    names = {}
    for key in keys:
        flag = key.meta.get("flag", True)
        if flag:
            name = flag if isinstance(flag, str) else key.key if counts[key.key] == 1 else f"{key.group}_{key.key}"
            names[key.name] = "--" + name.replace("_", "-")
    return names


def shown_default(key: Key, params: dict[str, Any], params_file: str) -> str:
    group = params.get(key.group) or {}
    if key.key in group and not key.meta.get("cli_only"):
        shown = _plain(group[key.key])
        return f"{shown} from {params_file}" if len(shown) <= 80 else f"the value in {params_file}"
    if key.default is dataclasses.MISSING:
        return "none: required" if key.meta.get("cli_only") else f"none: set {key.name} in {params_file}"
    return f"{_plain(key.default)}"


def _plain(value: Any) -> str:
    """A value as params.yaml spells it."""
    if isinstance(value, (str, Path)):
        return str(value)
    if isinstance(value, tuple):
        value = list(value)
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def add_flags(parser: argparse.ArgumentParser, keys: list[Key], params: dict[str, Any], params_file: str) -> None:
    names = flag_names(keys)
    for key in keys:
        if key.name not in names:
            continue
        help_text = f"{key.help} (default: {shown_default(key, params, params_file)})".strip()
        if not key.meta.get("cli_only"):
            help_text += f" [{key.name}]"
        help_text = help_text.replace("%", "%%")
        if _optional(key.type)[0] is bool:
            parser.add_argument(names[key.name], dest=key.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(names[key.name], dest=key.name, default=argparse.SUPPRESS,
                                metavar=key.key.upper(), help=help_text)


def read_params(path: str | None) -> tuple[dict[str, Any], str]:
    """(params, the file's name); a missing default params.yaml is no params, a missing --params an error."""
    name = path or DEFAULT_PARAMS
    if not Path(name).is_file():
        if path is not None:
            raise ConfigError(f"params file not found: {path}")
        return {}, name
    try:
        params = load_params(None, name)
    except yaml.MarkedYAMLError as err:   # one line: where and what
        where = f"line {err.problem_mark.line + 1}: " if err.problem_mark else ""
        raise ConfigError(f"params file {name} is not valid YAML: {where}{err.problem}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"params file {name} is not valid YAML: {err}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"params file {name}: not a mapping of groups")
    return params, name


def stage_parser(stage: str, description: str, parts: Sequence[Part], params: dict[str, Any], params_file: str,
                 extra: typing.Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.ArgumentParser:
    """Generated flags (help and default shown) + `extra`'s own arguments + --params + --verbose."""
    groups = ", ".join(dict.fromkeys(part.group for part in parts))
    parser = argparse.ArgumentParser(
        prog=f"python -m stages.{stage}", description=description,
        epilog=f"Defaults come from {params_file} (groups: {groups}); a flag overrides its key for this run.")
    add_flags(parser, keys_of(parts), params, params_file)
    if extra:
        extra(parser)
    parser.add_argument("--params", help=f"params file (default: {DEFAULT_PARAMS})")
    parser.add_argument("--verbose", action="store_true", help="log progress at INFO level (default: quiet)")
    return parser


def parse(stage: str, description: str, parts: Sequence[Part], argv: Sequence[str] | None = None,
          extra: typing.Callable[[argparse.ArgumentParser], None] | None = None) -> tuple[list, argparse.Namespace]:
    """A stage's command line: one config per Part and the parsed arguments.

    A bad params file, key or value raises a ConfigError naming the key (stages.cli.run prints it)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--params")
    known, _ = pre.parse_known_args(argv)
    params, params_file = read_params(known.params)
    args = stage_parser(stage, description, parts, params, params_file, extra).parse_args(argv)
    keys = keys_of(parts)
    by_name = {key.name: key for key in keys}
    overrides = {name: from_text(value, by_name[name]) if isinstance(value, str) else value
                 for name, value in vars(args).items() if name in by_name}
    configs = build(parts, params, overrides, flag_names(keys))
    return configs, args


def given(args: argparse.Namespace, name: str) -> bool:
    """Whether `group.key` was given on the command line."""
    return name in vars(args)


def unless_given(obj: Any, args: argparse.Namespace, group: str, named: str, companion: str) -> Any:
    """`obj` with `companion` (an output path) set to None when the output `named` was given on the
    command line and `companion` was not: it is then not written, instead of landing at the params'
    path beside the pipeline's own outputs (e.g. `--report X` without `--metrics`)."""
    if given(args, f"{group}.{named}") and not given(args, f"{group}.{companion}"):
        return dataclasses.replace(obj, **{companion: None})
    return obj


def check_fields(obj: Any, group: str) -> None:
    """A config dataclass's metadata limits (BOUNDS, choices), for __post_init__: one home per rule."""
    for f in dataclasses.fields(obj):
        meta = f.metadata
        if {"choices", *BOUNDS} & set(meta):
            key = Key(part=0, path=(f.name,), group=meta.get("group", group), key=f.name,
                      type=f.type, default=None, help="", meta=dict(meta))
            check(getattr(obj, f.name), key)
