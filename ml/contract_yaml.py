"""Contract files as YAML with line numbers: read a document, and report a broken rule as
`file:line: key.path: message` (`ContractError`)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from ml.errors import ContractError

KeyPath = tuple  # a key path: ("columns", "dep_delay", "max"), ("features", "joins", 0, "keys")


def key_lines(node: yaml.Node, path: KeyPath = (), out: dict | None = None) -> dict[KeyPath, int]:
    """Key path -> 1-based line of every key and list item of a composed YAML document."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*path, key_node.value)
            out[key] = key_node.start_mark.line + 1
            key_lines(value_node, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = item.start_mark.line + 1
            key_lines(item, (*path, i), out)
    return out


def dotted(path: KeyPath) -> str:
    """`("features", "joins", 0, "keys")` -> `features.joins[0].keys`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def show(value: Any) -> str:
    """A value as an error message names it (a mapping or a list by its kind)."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


_DURATION = re.compile(r"(\d+)\s*([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: Any, units: str = "smhd") -> timedelta | None:
    """`30s`, `90m`, `6h`, `7d` (a unit among `units`), `0` -> a timedelta; None when `text`
    is not one. The one spelling of a duration in a contract (`schedule.wait`,
    `model.retrain.every`, `model.retrain.window`)."""
    if text == 0 and not isinstance(text, bool):
        return timedelta(0)
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match or match[2] not in units:
        return None
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Checker:
    """Raises `ContractError` as `file:line: key.path: message`."""

    def __init__(self, path: Path, lines: dict[KeyPath, int]) -> None:
        self.path = path
        self.lines = lines

    def fail(self, where: KeyPath, message: str, line_at: KeyPath | None = None) -> None:
        p = tuple(where if line_at is None else line_at)
        while p and p not in self.lines:
            p = p[:-1]
        line = self.lines.get(p, 1)
        key = dotted(where)
        raise ContractError(f"{self.path}:{line}: {key + ': ' if key else ''}{message}")

    def mapping(self, where: KeyPath, value: Any, allowed: set[str], what: str = "") -> dict:
        if not isinstance(value, dict):
            self.fail(where, f"must be a mapping{what}, got {show(value)}")
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            self.fail(
                where,
                f"unknown key(s) {unknown}; allowed: {sorted(allowed)}",
                line_at=(*where, unknown[0]),
            )
        return value

    def names(self, where: KeyPath, value: Any, known: set[str] | None, what: str) -> list[str]:
        """A list of column names, each one of `known` (when given)."""
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(where, f"must be a list of column names, got {show(value)}")
        if known is not None:
            missing = [v for v in value if v not in known]
            if missing:
                self.fail(where, f"{missing} are not {what}")
        return value


def read_document(path: Path) -> tuple[Any, Checker]:
    """The parsed document of a contract file and a `Checker` that knows its lines."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ContractError(f"{path}: no such contract file") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ContractError(f"{path}{where}: not valid YAML: {exc}") from None
    return raw, Checker(path, key_lines(node) if node is not None else {})
