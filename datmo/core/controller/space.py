"""A sweep's search space, from `datmo sweep -c KEY=VALUES` options.

In `sweep`, commas at the top level of a value separate the values to try, brackets nest
(`layers=[64,32],[128]` is two values, each a list), a quoted string is one value
(`name="a, b",c`), and these function forms are the only distributions:

    range(start, stop[, step])   whole numbers, as Python's range: a list to try
    choice(a, b, c)              the same as a, b, c
    uniform(a, b)                a float drawn evenly from [a, b]       (random search)
    loguniform(a, b)             a float drawn evenly on a log scale    (random search)
    int(a, b)                    a whole number from a to b, both ends  (random search)

A grid tries every combination; `--random N --seed S` draws N points, so a sweep run
again with the same seed stages the same runs.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from datmo.core.util.params import parse_value, split_pairs
from datmo.errors import UsageError

_FUNC = re.compile(r"^\s*(range|choice|uniform|loguniform|int)\s*\((.*)\)\s*$", re.S)
DISTRIBUTIONS = ("uniform", "loguniform", "int")
GRID_LIMIT = 1000


@dataclass(frozen=True)
class Dimension:
    """One key's values: a list to try (values, with the text each was typed as), or a
    distribution to draw from (kind, low, high)."""

    key: str
    values: tuple[Any, ...] = ()
    texts: tuple[str, ...] = ()
    kind: str = "list"
    low: float = 0.0
    high: float = 0.0

    def describe(self) -> str:
        if self.kind == "list":
            return ",".join(self.texts)
        return f"{self.kind}({_exact(self.low)},{_exact(self.high)})"


def _exact(x: float) -> str:
    """A number as text that parses back to the same number."""
    return str(int(x)) if x.is_integer() else repr(x)


def split_top(text: str) -> list[str]:
    """The parts of text at its top-level commas (not inside brackets, parens, quotes)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, c in enumerate(text):
        if quote:
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c in "[({":
            depth += 1
        elif c in "])}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if quote or depth:
        raise UsageError(f"'{text}' has an unclosed quote or bracket")
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _number(text: str, where: str) -> float:
    value = parse_value(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{where}: '{text}' is not a number")
    return float(value)


def dimension(key: str, text: str) -> Dimension:
    where = f"-c {key}={text}"
    m = _FUNC.match(text)
    if m:
        name, args = m.group(1), split_top(m.group(2))
        if name == "choice":
            return _listed(key, args, where)
        if name == "range":
            nums = [_number(a, where) for a in args]
            if not 1 <= len(nums) <= 3 or any(n != int(n) for n in nums):
                raise UsageError(f"{where}: range takes 1 to 3 whole numbers, as Python's")
            values = list(range(*(int(n) for n in nums)))
            if not values:
                raise UsageError(f"{where}: this range is empty")
            return Dimension(key, tuple(values), tuple(str(v) for v in values))
        if len(args) != 2:
            raise UsageError(f"{where}: {name} takes two numbers, low and high")
        low, high = (_number(a, where) for a in args)
        if not low < high or (name == "loguniform" and low <= 0):
            raise UsageError(
                f"{where}: give low < high" + (", both > 0" if name == "loguniform" else "")
            )
        return Dimension(key, kind=name, low=low, high=high)
    return _listed(key, split_top(text), where)


def _listed(key: str, parts: list[str], where: str) -> Dimension:
    if any(not p for p in parts):
        raise UsageError(f"{where}: an empty value between commas")
    values = []
    for part in parts:
        if len(part) >= 2 and part[0] == part[-1] and part[0] in "'\"":
            values.append(part[1:-1])  # a quoted string is one value, commas and all
        else:
            values.append(parse_value(part))
    return Dimension(key, tuple(values), tuple(parts))


def parse(items: tuple[str, ...] | list[str]) -> list[Dimension]:
    """The dimensions of `-c KEY=VALUES` options, in the order given."""
    dims = [dimension(k, v) for k, v in split_pairs(items, "--config").items()]
    if not dims:
        raise UsageError("a sweep needs at least one -c KEY=VALUES, such as -c lr=0.1,0.01")
    return dims


def size(dims: list[Dimension]) -> int:
    """How many points a grid of these dimensions has."""
    for d in dims:
        if d.kind in DISTRIBUTIONS:
            raise UsageError(
                f"-c {d.key}={d.describe()} is a distribution: draw from it with --random N"
            )
    return math.prod(len(d.values) for d in dims)


Point = tuple[dict[str, Any], dict[str, str]]  # the config, and the text of each value


def grid(dims: list[Dimension]) -> Iterator[Point]:
    size(dims)
    for combo in itertools.product(*(range(len(d.values)) for d in dims)):
        yield (
            {d.key: d.values[i] for d, i in zip(dims, combo, strict=True)},
            {d.key: d.texts[i] for d, i in zip(dims, combo, strict=True)},
        )


def draws(dims: list[Dimension], n: int, seed: int) -> Iterator[Point]:
    """n points drawn at random, the same ones for the same seed."""
    rng = random.Random(seed)
    for _ in range(n):
        config: dict[str, Any] = {}
        texts: dict[str, str] = {}
        for d in dims:
            if d.kind == "list":
                i = rng.randrange(len(d.values))
                config[d.key], texts[d.key] = d.values[i], d.texts[i]
            elif d.kind == "int":
                value: Any = rng.randint(math.ceil(d.low), math.floor(d.high))
                config[d.key], texts[d.key] = value, str(value)
            else:
                if d.kind == "uniform":
                    value = rng.uniform(d.low, d.high)
                else:
                    value = math.exp(rng.uniform(math.log(d.low), math.log(d.high)))
                config[d.key], texts[d.key] = value, repr(value)
        yield config, texts
