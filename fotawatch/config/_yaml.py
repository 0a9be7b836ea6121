"""Read a config document safely: size cap, strict UTF-8, YAML with limits on aliases and depth.

Hostile input fails fast with one line naming the place: a billion-laughs document is refused
while it is composed (too many aliases) or before it is constructed (too many nodes once aliases
are expanded), never after the expansion has eaten the memory; a document of a million tiny
nodes is refused as soon as it has composed ``MAX_NODES`` of them (composing costs about 1 kB
and 60 us per node in pure Python: this bounds the work). Problems found here concern the
document rather than a key, so their ``ConfigError.key`` is empty and the message starts with
``source:line:column``. Messages never quote the document: it may hold secrets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from fotawatch.config._paths import index_path, key_path
from fotawatch.errors import ConfigError

__all__ = [
    "MAX_ALIASES",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "check_size",
    "decode",
    "parse_yaml",
    "read_file",
]

MAX_BYTES = 1024 * 1024
MAX_ALIASES = 100
MAX_DEPTH = 64
MAX_NODES = 100_000
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"


def read_file(path: Path) -> bytes:
    """The file's bytes, refusing to read more than ``MAX_BYTES``."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)
    except OSError as err:
        raise ConfigError("", f"cannot read config file {path}: {err.strerror}") from err
    check_size(len(data), str(path))
    return data


def check_size(size: int, source: str) -> None:
    if size > MAX_BYTES:
        raise ConfigError("", f"{source}: config file is larger than 1 MiB; refusing to parse it")


def decode(data: bytes, source: str) -> str:
    """Strict UTF-8 (a byte-order mark is allowed); the error names the line, not the bytes."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ConfigError("", f"{source}:{line}: config file is not valid UTF-8") from err


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """The document's top-level mapping; any YAML problem becomes one ``ConfigError`` line."""
    check_size(len(text.encode("utf-8", "surrogatepass")), source)
    try:  # the reader checks every character up front: a control character fails here
        loader = _Loader(text, source)
    except yaml.YAMLError as err:
        raise ConfigError("", f"{source}: {_unmarked(err)}") from err
    try:
        data = _load(loader, source)
    except yaml.MarkedYAMLError as err:
        raise ConfigError("", _marked(err, source)) from err
    except yaml.YAMLError as err:
        raise ConfigError("", f"{source}: {_unmarked(err)}") from err
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError("", f"{source}: the top level must be a mapping, not a {_kind(data)}")
    return data


def _load(loader: _Loader, source: str) -> Any:
    node = loader.get_single_node()
    if node is None:
        raise ConfigError("", f"{source}: config file is empty")
    _Walk(source).measure(node, "")
    return loader.construct_document(node)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, counting aliases and nesting while it composes."""

    def __init__(self, text: str, source: str) -> None:
        super().__init__(text)
        self._source = source
        self._aliases = 0
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise self._limit(f"has more than {MAX_NODES} nodes")
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise self._limit(f"has more than {MAX_ALIASES} aliases")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise self._limit(f"is nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _limit(self, what: str) -> ConfigError:
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        where = f"{self._source}:{mark.line + 1}:{mark.column + 1}"
        return ConfigError("", f"{where}: document {what}; refusing to parse it")


class _Walk:
    """One pass over the composed graph: keys, cycles, and size and depth with aliases expanded.

    Nodes are visited in document order, so an anchor is measured before its aliases and each
    distinct node is measured once; the recursion is no deeper than the composed document.
    """

    def __init__(self, source: str) -> None:
        self._source = source
        self._measured: dict[int, tuple[int, int]] = {}
        self._open: set[int] = set()

    def measure(self, node: Node, path: str) -> tuple[int, int]:
        """``(size, height)`` of the node with aliases expanded."""
        known = self._measured.get(id(node))
        if known is not None:
            return known
        if id(node) in self._open:
            raise ConfigError(path, f"recursive alias at {_where(node, self._source)}")
        self._open.add(id(node))
        children = [self.measure(child, child_path)
                    for child, child_path in _children(node, path, self._source)]
        self._open.discard(id(node))
        size = 1 + sum(size for size, _ in children)
        height = 1 + max((height for _, height in children), default=0)
        self._check(node, size, height)
        self._measured[id(node)] = (size, height)
        return size, height

    def _check(self, node: Node, size: int, height: int) -> None:
        where = _where(node, self._source)
        if size > MAX_NODES:
            raise ConfigError("", f"{where}: document expands to more than {MAX_NODES} nodes "
                              "through aliases; refusing to parse it")
        if height > MAX_DEPTH:
            raise ConfigError("", f"{where}: document is nested more than {MAX_DEPTH} levels "
                              "deep through aliases; refusing to parse it")


def _children(node: Node, path: str, source: str) -> list[tuple[Node, str]]:
    if isinstance(node, SequenceNode):
        return [(item, index_path(path, i)) for i, item in enumerate(node.value)]
    if isinstance(node, MappingNode):
        _check_keys(node, path, source)
        return [pair for k, v in node.value for pair in ((k, path), (v, _child(path, k)))]
    return []


def _check_keys(node: MappingNode, path: str, source: str) -> None:
    """Keys are strings (quote ``1`` or ``on``) and appear once per mapping."""
    seen: set[str] = set()
    for key, _ in node.value:
        if isinstance(key, ScalarNode) and key.tag == _MERGE_TAG:
            continue
        if not isinstance(key, ScalarNode) or key.tag != _STR_TAG:
            raise ConfigError(_child(path, key), f"key at {_where(key, source)} must be a string; "
                              "quote it")
        if key.value in seen:
            raise ConfigError(_child(path, key), f"duplicate key at {_where(key, source)}")
        seen.add(key.value)


def _child(path: str, key: Node) -> str:
    return key_path(path, key.value if isinstance(key, ScalarNode) else "?")


def _where(node: Node, source: str) -> str:
    return f"{source}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"


def _marked(err: yaml.MarkedYAMLError, source: str) -> str:
    mark = err.problem_mark or err.context_mark
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
    problem = err.problem or err.context or "invalid YAML"
    context = f" ({err.context})" if err.context and err.problem else ""
    return f"{where}: {problem}{context}".replace("\n", " ")


def _unmarked(err: yaml.YAMLError) -> str:
    if isinstance(err, yaml.reader.ReaderError):
        return f"unacceptable character at offset {err.position}"
    return "invalid YAML"


def _kind(data: object) -> str:
    return {list: "list", str: "string", int: "number", float: "number"}.get(type(data), "scalar")
