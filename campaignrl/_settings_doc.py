"""Agent settings documented from the code: each field's type, default and docstring.

A learner's settings are a dataclass whose fields each carry a docstring on the line below
them (cleanrl's ``Args`` style); a baseline's are its constructor's keyword arguments,
documented in the class docstring's ``Args:`` section. ``campaignrl agents`` and
``campaignrl train --agent X --help-settings`` print them from here, so the help cannot drift
from the code.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SettingDoc",
    "attribute_docs",
    "baseline_setting_docs",
    "config_setting_docs",
    "format_settings",
]


@dataclass(frozen=True)
class SettingDoc:
    """One setting of an agent, as the help prints it."""

    name: str
    """the setting's name (a ``--set`` key, a ``params`` key in an experiment)"""
    type: str
    """its annotation, as written in the code"""
    default: Any
    """its default value"""
    doc: str
    """its documentation on one line (empty if the code has none)"""


def attribute_docs(cls: type) -> dict[str, str]:
    """The docstring written under each annotated attribute of ``cls`` (and its bases).

    Examples:
        >>> attribute_docs(SettingDoc)["default"]
        'its default value'
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # a class without source (builtin, made at runtime)
            continue
        tree = ast.parse(source)
        node = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
        if node is None:
            continue
        for first, second in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(first, ast.AnnAssign)
                and isinstance(first.target, ast.Name)
                and isinstance(second, ast.Expr)
                and isinstance(second.value, ast.Constant)
                and isinstance(second.value.value, str)
            ):
                docs[first.target.id] = " ".join(second.value.value.split())
    return docs


def config_setting_docs(cls: type, *, skip: tuple[str, ...] = ()) -> list[SettingDoc]:
    """The fields of the settings dataclass ``cls`` with their defaults and docs, in order.

    Args:
        cls: A dataclass whose fields all have defaults.
        skip: Fields that are not settings (e.g. the algorithm an agent's name fixes).
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"`cls` must be a dataclass, got {cls!r}")
    docs = attribute_docs(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise ValueError(f"setting {f.name!r} of {cls.__name__} has no default")
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        out.append(SettingDoc(f.name, kind, default, docs.get(f.name, "")))
    return out


_ARGS_ITEM = re.compile(r"^(\w+)(?: \(.*?\))?: (.*)$")


def baseline_setting_docs(cls: type) -> list[SettingDoc]:
    """A baseline's settings: its ``__init__`` keyword arguments, docs from ``Args:``."""
    signature = inspect.signature(cls.__init__)  # type: ignore[misc]
    docs: dict[str, str] = {}
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    if "Args:" in lines:
        current = None
        for line in lines[lines.index("Args:") + 1 :]:
            if not line.startswith(" ") and line.strip():
                break  # the next section
            match = _ARGS_ITEM.match(line.strip())
            if match and line.startswith("    ") and not line.startswith("     "):
                current = match[1]
                docs[current] = match[2]
            elif current is not None and line.strip():
                docs[current] += " " + line.strip()
    out = []
    for name, p in signature.parameters.items():
        if name == "self" or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        kind = p.annotation if isinstance(p.annotation, str) else str(p.annotation)
        out.append(SettingDoc(name, kind, p.default, docs.get(name, "")))
    return out


def _first_sentence(doc: str, limit: int = 90) -> str:
    """The doc up to its first sentence end (a period before a capital), cut at ``limit``."""
    sentence = re.split(r"(?<=\.)\s+(?=[A-Z])", doc, maxsplit=1)[0]
    if len(sentence) > limit:
        sentence = sentence[: limit - 3].rsplit(" ", 1)[0] + "..."
    return sentence


def format_settings(
    title: str, settings: list[SettingDoc], *, full: bool = False, width: int = 100
) -> str:
    """Settings as text, ``name = default  doc`` one per line (``full``: type and whole doc).

    Examples:
        >>> print(format_settings("ppo", [SettingDoc("gamma", "float", 0.99, "discount")]))
        ppo
          gamma = 0.99  discount
    """
    lines = [title]
    if not settings:
        lines.append("  (no settings)")
    heads = [f"{s.name} = {s.default!r}" for s in settings]
    pad = max((len(h) for h in heads), default=0)
    for head, s in zip(heads, settings, strict=True):
        doc = s.doc.replace("``", "`")
        if full:
            lines.append(f"  {s.name}: {s.type} = {s.default!r}")
            lines += textwrap.wrap(doc, width, initial_indent="      ", subsequent_indent="      ")
        else:
            lines.append(f"  {head:<{pad}}  {_first_sentence(doc)}".rstrip())
    return "\n".join(lines)
