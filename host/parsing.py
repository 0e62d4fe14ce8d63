"""Reading outside text (config files, character files, JSON in variables) without tracebacks.

`decode` reads bytes as UTF-8 (with or without a byte order mark) or UTF-16/32 (as Windows
editors save them), telling a file in another encoding apart from a broken one. `load_yaml` and
`load_json` parse with bounds: nesting depth (Python's parsers recurse, and the host walks the
data recursively later), the number of values after YAML aliases are expanded (a "billion
laughs" document is a few lines), and integer length (Python refuses to read or print integers
of over 4,300 digits). Every failure is a `ParseError` with the reason and, when known, the line
and the key path, for the caller to name its file or variable.
"""

from __future__ import annotations

import codecs
import json
import sys
from collections.abc import Mapping
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["MAX_DEPTH", "ParseError", "check_shape", "decode", "load_json", "load_yaml"]

MAX_DEPTH = 100
"""Deepest nesting of mappings and lists accepted (configs and characters use a handful)."""
MIN_VALUES = 100_000
"""Values accepted after expanding aliases, at least; more for a longer text (`_max_values`)."""

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


class ParseError(ValueError):
    """Text that cannot be read: `reason`, and the `line` (1-based) and key `path` if known."""

    def __init__(
        self, reason: str, *, line: int | None = None, path: str = "", limit: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.path = path
        self.limit = limit
        """Whether the text is well-formed but over a bound (depth, values, integer length)."""

    @property
    def position(self) -> str:
        """``line 3, at a.b[0]`` with the parts that are known (empty if none)."""
        parts = [f"line {self.line}"] if self.line is not None else []
        if self.path:
            parts.append(f"at {self.path}")
        return ", ".join(parts)

    def describe(self, name: str) -> str:
        """``name (line 3, at a.b): reason`` with the parts that are known."""
        position = f" ({self.position})" if self.position else ""
        return f"{name}{position}: {self.reason}"


def decode(data: bytes) -> str:
    """`data` as text: UTF-8/16/32 after a byte order mark (dropped), UTF-16/32 without one
    (told by the zero bytes of the first characters, as JSON's RFC 8259 does), else UTF-8.

    Anything else (Latin-1, cp1252, a binary file) is a `ParseError` naming the first byte that
    is not UTF-8, its line, and what to do."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            body, encoding = data[len(bom) :], codec
            break
    else:
        # no mark: UTF-16/32 still show by their zero bytes around the first ASCII character
        body, encoding = data, json.detect_encoding(data)
    label = "UTF-" + encoding.split("-")[1]
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1 if label == "UTF-8" else None
        if label != "UTF-8" or data is not body:
            reason = f"not valid {label} text"
        else:
            reason = (
                f"not UTF-8 text: byte 0x{body[exc.start]:02x} at offset {exc.start} is not"
                " UTF-8 (a Latin-1 or Windows-1252 file?); save it as UTF-8"
            )
        raise ParseError(reason, line=line) from None


def _max_values(text: str) -> int:
    # Without aliases a document holds fewer values than characters; a document whose
    # aliases expand to far more is a bomb, whatever its size.
    return max(MIN_VALUES, 2 * len(text))


def _render_path(parts: list[object]) -> str:
    out = ""
    shown = parts if len(parts) <= 6 else [*parts[:5], "..."]
    for part in shown:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "...":
            out += "..."
        else:
            out += ("." if out else "") + str(part)
    return out


def check_shape(data: Any, *, max_depth: int = MAX_DEPTH, max_values: int = MIN_VALUES) -> None:
    """`ParseError` when `data` nests deeper than `max_depth` or holds more than `max_values`
    values (shared sub-trees counted each time they appear: a YAML alias bomb, or data that
    contains itself). Iterative, so it stops early and never recurses."""
    stack: list[tuple[Any, int, list[object]]] = [(data, 0, [])]
    count = 0
    while stack:
        value, depth, path = stack.pop()
        count += 1
        if count > max_values:
            raise ParseError(
                f"holds more than {max_values:,} values (YAML aliases expanded, or data that"
                " contains itself)",
                path=_render_path(path),
                limit=True,
            )
        if isinstance(value, Mapping):
            children: list[tuple[object, Any]] = list(value.items())
        elif isinstance(value, list | tuple):
            children = list(enumerate(value))
        else:
            continue
        if depth >= max_depth and children:
            raise ParseError(
                f"nested deeper than {max_depth} levels", path=_render_path(path), limit=True
            )
        for key, child in children:
            stack.append((child, depth + 1, [*path, key] if len(path) < 7 else path))


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a depth limit while composing (its composer recurses) and
    readable errors for the values its constructors fail on (long integers, bad dates)."""

    max_depth = MAX_DEPTH

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._path: list[object] = []
        self._checked: set[int] = set()
        """Mappings already checked for keys given twice (`flatten_mapping`)."""

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if parent is not None:
            part = index.value if isinstance(index, ScalarNode) else index
            self._path.append(part if isinstance(part, int | str) else "?")
        try:
            if len(self._path) > self.max_depth:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ParseError(
                    f"nested deeper than {self.max_depth} levels",
                    line=mark.line + 1,
                    path=_render_path(self._path),
                    limit=True,
                )
            return super().compose_node(parent, index)
        finally:
            if parent is not None:
                self._path.pop()

    def construct_document(self, node: Node) -> Any:
        self._root = node
        return super().construct_document(node)

    def flatten_mapping(self, node: MappingNode) -> None:
        """Refuse a key written twice in one mapping, before merges (``<<: *base``) rewrite
        it: PyYAML keeps the last one silently, so a setting given twice (``http: {port: 1}``
        then ``http: {port: 2}``) would be half ignored; a merged key may be overridden, as
        YAML says. Each mapping is checked once, as written: flattening rewrites an aliased
        mapping in place, and it is flattened again wherever it is used."""
        if id(node) not in self._checked:
            self._checked.add(id(node))
            seen: dict[tuple[str, str], int] = {}
            for key, _value in node.value:
                if not isinstance(key, ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                    continue
                line = key.start_mark.line + 1
                first = seen.get((key.tag, key.value))
                seen[(key.tag, key.value)] = line
                if first is not None:
                    raise ParseError(
                        f"key {key.value!r} is given twice in the same mapping (lines {first}"
                        f" and {line}); keep one",
                        line=line,
                        path=self._path_of(node),
                    )
        super().flatten_mapping(node)

    def _path_of(self, target: Node) -> str:
        """The key path of `target` in the document (searched only when reporting it)."""
        stack: list[tuple[Node, list[object]]] = [(self._root, [])]
        seen: set[int] = set()
        while stack:
            node, path = stack.pop()
            if node is target:
                return _render_path(path)
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, MappingNode):
                for key, value in node.value:
                    part = key.value if isinstance(key, ScalarNode) else "?"
                    stack.append((value, [*path, part]))
            elif isinstance(node, SequenceNode):
                stack.extend((item, [*path, index]) for index, item in enumerate(node.value))
        return ""

    def construct_yaml_int(self, node: ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            digits = sum(c.isalnum() for c in str(node.value))
            raise ParseError(
                _long_integer(digits),
                line=node.start_mark.line + 1,
                path=self._path_of(node),
                limit=True,
            ) from None

    def construct_yaml_timestamp(self, node: ScalarNode) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except (ValueError, OverflowError) as exc:
            raise ParseError(
                f"{node.value!r} looks like a date but is not one ({exc}); quote it to keep it as"
                " text",
                line=node.start_mark.line + 1,
                path=self._path_of(node),
            ) from None


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)
_BoundedLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", _BoundedLoader.construct_yaml_timestamp
)


def load_yaml(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """The value of the YAML document `text` (safe tags only), bounded; `ParseError` otherwise."""
    try:
        loader = _BoundedLoader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        raise _reader_error(exc, text) from None
    loader.max_depth = max_depth
    try:
        data = loader.get_single_data()
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise ParseError(problem, line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise ParseError(str(exc).replace("\n", " ")) from None
    except RecursionError:  # only if the stack was deep already when called
        raise ParseError(f"nested deeper than {max_depth} levels", limit=True) from None
    finally:
        loader.dispose()
    check_shape(data, max_depth=max_depth, max_values=_max_values(text))
    return data


def _reader_error(exc: yaml.reader.ReaderError, text: str) -> ParseError:
    line = text[: exc.position].count("\n") + 1
    return ParseError(f"character #x{exc.character:04x} is not allowed in YAML", line=line)


class _LongInteger(str):
    """An integer too long for `int`, kept as its digits until its place is found."""


def _long_integer(digits: int) -> str:
    return (
        f"an integer of {digits} digits: Python reads at most {sys.get_int_max_str_digits():,}"
        " (quote it to keep it as text)"
    )


def _integer(digits: str) -> int | _LongInteger:
    try:
        return int(digits)
    except ValueError:
        return _LongInteger(digits)


def _find(data: Any, wanted: type) -> tuple[Any, list[object]] | None:
    stack: list[tuple[Any, list[object]]] = [(data, [])]
    while stack:
        value, path = stack.pop()
        if isinstance(value, wanted):
            return value, path
        if isinstance(value, dict):
            stack.extend((child, [*path, key]) for key, child in value.items())
        elif isinstance(value, list):
            stack.extend((child, [*path, index]) for index, child in enumerate(value))
    return None


def load_json(text: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """The value of the JSON document `text`, bounded like `load_yaml`; `ParseError` otherwise."""
    try:
        data = json.loads(text, parse_int=_integer)
    except json.JSONDecodeError as exc:
        raise ParseError(exc.msg, line=exc.lineno) from None
    except RecursionError:
        raise ParseError(f"nested deeper than {max_depth} levels", limit=True) from None
    check_shape(data, max_depth=max_depth, max_values=_max_values(text))
    found = _find(data, _LongInteger)
    if found is not None:
        digits, path = found
        line = text[: text.find(digits)].count("\n") + 1
        raise ParseError(
            _long_integer(len(digits.lstrip("-"))), line=line, path=_render_path(path), limit=True
        )
    return data
