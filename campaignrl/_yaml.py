"""A strict YAML loader for configs: no duplicate keys, no alias bombs, YAML 1.2 floats.

PyYAML's ``safe_load`` never runs code, but it keeps the last of two equal keys silently,
expands aliases without limit (a "billion laughs" file of a few hundred bytes stands for 10^9
nodes: PyYAML shares them, but whatever walks the result, a validator or ``json.dumps``, does
not) and reads ``3e-4`` as a string (YAML 1.1 floats need a dot). :class:`StrictLoader`
refuses the first two by name and line and reads the third as a float.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

__all__ = ["MAX_NODES", "StrictLoader", "describe_error", "strict_load"]

MAX_NODES = 100_000
"""most nodes a document may stand for once every alias is expanded (configs hold hundreds)"""

_MERGE_TAG = "tag:yaml.org,2002:merge"


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys and documents that expand too far.

    Every composed node records how many nodes it stands for with its aliases expanded
    (memoized, so counting is linear in the file); a node over :data:`MAX_NODES` or an alias
    to a node that contains it stops the load with a :class:`yaml.YAMLError` naming the line.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._expanded: dict[int, int] = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        """Compose as PyYAML does, counting each node's expanded size."""
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            if id(node) not in self._expanded:
                raise ComposerError(
                    None, None, "found an alias to a node that contains it (recursive)", mark
                )
            return node
        mark = self.peek_event().start_mark
        node = super().compose_node(parent, index)
        if isinstance(node, SequenceNode):
            size = 1 + sum(self._expanded[id(child)] for child in node.value)
        elif isinstance(node, MappingNode):
            size = 1 + sum(self._expanded[id(k)] + self._expanded[id(v)] for k, v in node.value)
        else:
            size = 1
        if size > MAX_NODES:
            raise ComposerError(
                None,
                None,
                f"found a node that expands to more than {MAX_NODES:,} nodes (aliases "
                "expanded); refusing it",
                mark,
            )
        self._expanded[id(node)] = size
        return node

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Refuse a key given twice in one mapping (merge keys ``<<`` may be overridden)."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML refuses it below
                continue
            if first is not None:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first on line {first})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 floats without a dot (3e-4, 1E6): YAML 1.1, PyYAML's dialect, reads them as strings.
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def strict_load(text: str) -> Any:
    r"""Parse one YAML document with :class:`StrictLoader`.

    Raises:
        yaml.YAMLError: On a syntax error, a duplicate key, a recursive alias or a document
            that expands beyond :data:`MAX_NODES` nodes.

    Examples:
        >>> strict_load("learning_rate: 3e-4")
        {'learning_rate': 0.0003}
        >>> try:
        ...     strict_load("a: 1\na: 2")
        ... except yaml.YAMLError as exc:
        ...     print(describe_error(exc))
        line 2, column 1: found duplicate key 'a' (first on line 1)
    """
    return yaml.load(text, Loader=StrictLoader)  # StrictLoader is a SafeLoader


def describe_error(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: ``line 3, column 1: found duplicate key 'a' (...)``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    if problem is None:
        return " ".join(str(exc).split())
    where = "" if mark is None else f"line {mark.line + 1}, column {mark.column + 1}: "
    return where + " ".join(str(problem).split())
