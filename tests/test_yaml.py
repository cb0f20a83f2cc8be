"""The strict YAML loader: duplicate keys, alias bombs, recursive aliases, YAML 1.2 floats."""

from __future__ import annotations

import pytest
import yaml

from campaignrl._yaml import MAX_NODES, describe_error, strict_load


def billion_laughs(levels: int = 9) -> str:
    """The classic: each level is nine aliases of the one before (9^levels strings)."""
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    previous = "a"
    for name in "bcdefghijklm"[: levels - 1]:
        text += f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
        previous = name
    return text


def test_billion_laughs_is_refused_while_composing():
    # PyYAML alone accepts it (its objects are shared) and anything walking the result hangs.
    assert yaml.safe_load(billion_laughs(3))["c"][0][0] == ["lol"] * 9
    with pytest.raises(yaml.YAMLError) as info:
        strict_load(billion_laughs())
    assert describe_error(info.value) == (
        f"line 6, column 4: found a node that expands to more than {MAX_NODES:,} nodes "
        "(aliases expanded); refusing it"
    )


def test_aliases_within_the_limit_still_work():
    data = strict_load("base: &b {alpha: 1.0, epsilon: 0.1}\nother:\n  <<: *b\n  alpha: 2\n")
    assert data == {"base": {"alpha": 1.0, "epsilon": 0.1}, "other": {"alpha": 2, "epsilon": 0.1}}
    assert strict_load(billion_laughs(4))["d"][8][8][8] == ["lol"] * 9  # 9^4 = 6,561 strings


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: a\nseeds: [0]\nname: b\n", "line 3, column 1: found duplicate key 'name' "
         "(first on line 1)"),
        ("agents:\n  - agent: ucb1\n    params: {epsilon: 0.1, epsilon: 0.2}\n",
         "found duplicate key 'epsilon' (first on line 3)"),
        ("x: &x [1, *x]\n", "line 1, column 11: found an alias to a node that contains it"),
        ("name: [unclosed\n", "line 2, column 1: expected ',' or ']', but got '<stream end>'"),
    ],
)  # fmt: skip
def test_bad_documents_are_refused_naming_the_line(text, message):
    with pytest.raises(yaml.YAMLError) as info:
        strict_load(text)
    assert message in describe_error(info.value)


@pytest.mark.parametrize(
    ("text", "value"),
    [("3e-4", 3e-4), ("1E6", 1e6), ("-2.5e+3", -2500.0), ("1.5", 1.5), ("7", 7), ("1_000", 1000)],
)
def test_floats_without_a_dot_are_floats(text, value):
    assert yaml.safe_load(text) == (text if "e" in text.lower() and "." not in text else value)
    parsed = strict_load(text)
    assert parsed == value and type(parsed) is type(value)
