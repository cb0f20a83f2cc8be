"""Argument checks shared by every module: one message format for bad input."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["check_array", "check_choice", "check_scalar"]


def check_scalar(
    value: Any,
    name: str,
    target_type: type | tuple[type, ...],
    *,
    min_val: float | None = None,
    max_val: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
) -> None:
    """Refuse a scalar of the wrong type, non-finite, or outside ``[min_val, max_val]``.

    Args:
        value: The value to check.
        name: The argument or field name, quoted in the error.
        target_type: Accepted type(s). ``bool`` is refused where ``int`` is asked for.
        min_val: Lower bound, or ``None``.
        max_val: Upper bound, or ``None``.
        min_inclusive: Whether ``min_val`` itself is allowed.
        max_inclusive: Whether ``max_val`` itself is allowed.

    Raises:
        TypeError: If ``value`` is not of ``target_type``.
        ValueError: If ``value`` is NaN, infinite or out of bounds.

    Examples:
        >>> check_scalar(0.5, "epsilon", float, min_val=0.0, max_val=1.0)
        >>> check_scalar(-1, "n_customers", int, min_val=1)
        Traceback (most recent call last):
        ...
        ValueError: `n_customers` must be >= 1, got -1
    """
    types = target_type if isinstance(target_type, tuple) else (target_type,)
    if isinstance(value, bool) and bool not in types:
        raise TypeError(f"`{name}` must be of type {_type_names(types)}, got bool {value!r}")
    if not isinstance(value, types):
        raise TypeError(
            f"`{name}` must be of type {_type_names(types)}, got {type(value).__name__} {value!r}"
        )
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value!r}")
    number = float(value)  # type: ignore[arg-type]  # a real number: the type was checked above
    if min_val is not None:
        if number < min_val or (not min_inclusive and number == min_val):
            op = ">=" if min_inclusive else ">"
            raise ValueError(f"`{name}` must be {op} {min_val}, got {value!r}")
    if max_val is not None:
        if number > max_val or (not max_inclusive and number == max_val):
            op = "<=" if max_inclusive else "<"
            raise ValueError(f"`{name}` must be {op} {max_val}, got {value!r}")


def check_array(
    array: Any,
    name: str,
    *,
    ndim: int | None = None,
    shape: Sequence[int | None] | None = None,
    min_val: float | None = None,
    max_val: float | None = None,
) -> np.ndarray:
    """Return ``array`` as a finite float ndarray, refusing a wrong shape or values.

    Args:
        array: Array-like to check.
        name: The argument or field name, quoted in the error.
        ndim: Required number of dimensions, or ``None``.
        shape: Required shape; ``None`` entries match any length.
        min_val: Smallest allowed value, or ``None``.
        max_val: Largest allowed value, or ``None``.

    Returns:
        The array as ``float64``.

    Raises:
        ValueError: On a wrong dimension, shape, a non-finite or out-of-range entry.

    Examples:
        >>> check_array([[1.0, 2.0]], "taste", ndim=2).shape
        (1, 2)
        >>> check_array([1.0, float("nan")], "rates")
        Traceback (most recent call last):
        ...
        ValueError: `rates` must be finite, got nan at index (1,)
    """
    if getattr(array, "dtype", None) is not None and np.dtype(array.dtype).kind == "c":
        # The float64 cast would drop the imaginary parts with only a warning.
        raise TypeError(f"`{name}` must be real, got dtype {array.dtype}")
    try:
        arr = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must be a numeric array, got {array!r}") from exc
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"`{name}` must be a {ndim}D array, got a {arr.ndim}D array")
    if shape is not None:
        if arr.ndim != len(shape) or any(
            s is not None and s != a for s, a in zip(shape, arr.shape, strict=True)
        ):
            want = tuple("any" if s is None else s for s in shape)
            raise ValueError(f"`{name}` must have shape {want}, got {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"`{name}` must be finite, got {arr[idx]} at index {idx}")
    for bound, op, fails in (
        (min_val, ">=", lambda a, b: a < b),
        (max_val, "<=", lambda a, b: a > b),
    ):
        if bound is not None:
            out = fails(arr, bound)
            if out.any():
                idx = tuple(int(i) for i in np.argwhere(out)[0])
                raise ValueError(f"`{name}` must be {op} {bound}, got {arr[idx]} at index {idx}")
    return arr


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """Refuse a value that is not one of ``choices``.

    Examples:
        >>> check_choice("retail", "world", ["retail", "sparse"])
        'retail'
        >>> check_choice("shop", "world", ["retail", "sparse"])
        Traceback (most recent call last):
        ...
        ValueError: `world` must be one of 'retail', 'sparse', got 'shop'
    """
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {listed}, got {value!r}")
    return str(value)


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types)
