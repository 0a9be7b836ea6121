"""Read a config document safely: size cap, strict UTF-8, YAML with limits on aliases and depth.

Hostile input fails fast with one line naming the place: a billion-laughs document is refused
while it is composed (too many aliases) or before it is constructed (too many nodes once aliases
are expanded), never after the expansion has eaten the memory; a document of a million tiny
nodes is refused as soon as it has composed ``MAX_NODES`` of them (composing costs about 1 kB
and 60 us per node in pure Python: this bounds the work). Problems found here concern the
document rather than a key, so their ``ConfigError.key`` is empty and the message starts with
``source:line:column``. Messages never quote the document: it may hold secrets.

Two loaders, one verdict. Where PyYAML has libyaml, a document is first read by libyaml's
parser; its events are composed here with every limit and key rule checked on the way (sizes
and depths with aliases expanded are summed per anchor, never expanded), then constructed by
PyYAML's safe constructor: 7x faster than the pure-Python ``yaml.SafeLoader`` on a
10,000-campaign config (0.24 s instead of 1.8 s). That fast path only ever accepts: at the first
thing it does not like (a limit, a key, a syntax or constructor error, a character the pure
reader refuses, or text the two scanners read differently: tabs, tags, ``?`` in a flow scalar,
directives, a byte-order mark, a comment stuck to a block scalar's header) it gives up, and the
pure-Python loader reads the document again, slowly, and accepts it or fails with the message it
always gave. Without libyaml the pure-Python loader reads every document.
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    ScalarEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
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
_CLoader = yaml.CSafeLoader if yaml.__with_libyaml__ else None
_REFUSED = object()  # what the fast path returns when the pure-Python loader must decide


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
    data = _fast_load(text)
    if data is _REFUSED:
        data = _pure_load(text, source)
    if not isinstance(data, dict):
        raise ConfigError("", f"{source}: the top level must be a mapping, not a {_kind(data)}")
    return data


def _pure_load(text: str, source: str) -> Any:
    """The document through the pure-Python loader; the reference for every error message."""
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
    except ValueError as err:  # a constructor's, e.g. the timestamp 2001-13-01
        raise ConfigError("", f"{source}: a value cannot be read: {err}") from err
    finally:
        loader.dispose()
    return data


def _load(loader: _Loader, source: str) -> Any:
    node = loader.get_single_node()
    if node is None:
        raise ConfigError("", f"{source}: config file is empty")
    _Walk(source).measure(node, "")
    return loader.construct_document(node)


def _fast_load(text: str) -> Any:
    """The document through libyaml, or ``_REFUSED`` if anything in it needs a closer look."""
    if _CLoader is None or _pure_only(text):
        return _REFUSED
    loader = _CLoader(text)
    try:
        with _gc_paused():
            return loader.construct_document(_FastComposer(loader).single_node())
    except (_RefusedError, yaml.YAMLError, ValueError):
        return _REFUSED
    finally:
        loader.dispose()


def _pure_only(text: str) -> bool:
    """Whether libyaml might read the text otherwise than the pure-Python loader, or the pure
    reader refuses it: a tab (libyaml allows more of them), a directive, a byte-order mark past
    the start, a comment right after a block scalar's header, a character the pure reader refuses.
    Conservative: the pure-Python loader reads such a text, slowly.
    """
    return bool(_PURE_ONLY.search(text) or yaml.reader.Reader.NON_PRINTABLE.search(text))


_PURE_ONLY = re.compile(r"[\t\ufeff]|(?:\A|[\n\r\x85\u2028\u2029])%|[|>][0-9+-]*#")


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile: the ~100,000 objects a 10,000-campaign config
    composes to would otherwise trigger collections that scan them all, again and again (half
    of the load time). Nothing made here is garbage in a cycle; reference counting frees it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _RefusedError(Exception):
    """The fast path leaves this document to the pure-Python loader."""


@dataclass(slots=True)
class _Open:
    """A collection being composed, and its size and height so far with aliases expanded."""

    node: SequenceNode | MappingNode
    anchor: str | None
    children: list[Node] = field(default_factory=list)
    size: int = 0
    height: int = 0


class _FastComposer:
    """PyYAML's composer over libyaml's events, refusing wherever the pure-Python loader raises.

    Refused: too many nodes or aliases composed, nested too deep, an undefined or duplicate
    anchor, an alias inside its own anchor, a mapping key that is not a string or appears twice,
    more than ``MAX_NODES`` nodes or ``MAX_DEPTH`` levels once aliases are expanded, an empty
    stream, more than one document; and where the two scanners may differ: any explicit tag, a
    plain scalar with ``?`` in a flow collection (libyaml 0.2.5 reads ``{a: b?}``, PyYAML does
    not). Size and height are kept per anchor: an alias adds its anchor's figures, never its
    expansion. The checks of ``_Loader`` and ``_Walk``, in one pass.
    """

    def __init__(self, loader: yaml.CSafeLoader) -> None:
        self._get = loader.get_event
        self._resolve: Callable[[type[Node], str | None, Any], str] = loader.resolve
        self._anchors: dict[str, tuple[Node, int, int]] = {}  # size and height -1 while open
        self._tags: dict[tuple[str, Any], str] = {}
        self._stack: list[_Open] = []
        self._nodes = 0
        self._aliases = 0

    def single_node(self) -> Node:
        self._get()  # stream start
        if not isinstance(self._get(), DocumentStartEvent):
            raise _RefusedError  # an empty stream
        node = self._root()
        if not isinstance(self._get(), DocumentEndEvent):
            raise _RefusedError
        if not isinstance(self._get(), StreamEndEvent):
            raise _RefusedError  # another document
        return node

    def _root(self) -> Node:
        stack = self._stack
        while True:
            event = self._get()
            if isinstance(event, ScalarEvent):
                node, size, height = self._scalar(event)
            elif isinstance(event, CollectionStartEvent):
                self._start(event)
                continue
            elif isinstance(event, CollectionEndEvent):
                node, size, height = self._end(stack.pop(), event)
            elif isinstance(event, AliasEvent):
                node, size, height = self._alias(event)
            else:
                raise _RefusedError
            if not stack:
                return node
            parent = stack[-1]
            parent.children.append(node)
            parent.size += size
            parent.height = max(parent.height, height)

    def _compose(self, anchor: str | None, entry: tuple[Node, int, int]) -> None:
        """``_Loader.compose_node``'s counts, and the composer's anchor rule."""
        self._nodes += 1
        if self._nodes > MAX_NODES or len(self._stack) >= MAX_DEPTH:
            raise _RefusedError
        if anchor is not None:
            if anchor in self._anchors:
                raise _RefusedError  # a duplicate anchor
            self._anchors[anchor] = entry

    def _alias(self, event: AliasEvent) -> tuple[Node, int, int]:
        self._nodes += 1
        self._aliases += 1
        found = self._anchors.get(event.anchor or "")  # an alias has one
        if (self._nodes > MAX_NODES or len(self._stack) >= MAX_DEPTH
                or self._aliases > MAX_ALIASES or found is None or found[1] < 0):
            raise _RefusedError  # over a limit, an undefined anchor, or an alias inside its anchor
        return found

    def _scalar(self, event: ScalarEvent) -> tuple[Node, int, int]:
        value, style = event.value, event.style or None  # libyaml's plain style is ""
        if event.tag is not None or (
            style is None and "?" in value and self._stack and self._stack[-1].node.flow_style
        ):
            raise _RefusedError  # a tag, or "?" where the pure-Python scanner ends a flow scalar
        key = (value, event.implicit)
        tag = self._tags.get(key) or self._tags.setdefault(
            key, self._resolve(ScalarNode, value, event.implicit))
        start: Any = event.start_mark  # libyaml's marks, duck-typed
        end: Any = event.end_mark
        node = ScalarNode(tag, value, start, end, style=style)
        self._compose(event.anchor, (node, 1, 1))
        return node, 1, 1

    def _start(self, event: CollectionStartEvent) -> None:
        if event.tag is not None:
            raise _RefusedError  # libyaml and the pure-Python scanner differ on some tags
        kind = SequenceNode if isinstance(event, SequenceStartEvent) else MappingNode
        tag = self._resolve(kind, None, event.implicit)
        mark: Any = event.start_mark  # libyaml's, duck-typed
        node = kind(tag, [], mark, None, flow_style=event.flow_style)
        self._compose(event.anchor, (node, -1, -1))  # open: an alias to it is recursive
        self._stack.append(_Open(node, event.anchor))

    def _end(self, open_: _Open, event: CollectionEndEvent) -> tuple[Node, int, int]:
        node, size, height = open_.node, open_.size + 1, open_.height + 1
        if size > MAX_NODES or height > MAX_DEPTH:
            raise _RefusedError
        node.end_mark = event.end_mark
        if isinstance(node, MappingNode):
            node.value = list(zip(open_.children[::2], open_.children[1::2], strict=True))
            try:
                _check_keys(node, "", "")
            except ConfigError as err:
                raise _RefusedError from err
        else:
            node.value = open_.children
        if open_.anchor is not None:
            self._anchors[open_.anchor] = (node, size, height)
        return node, size, height


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
