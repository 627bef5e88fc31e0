"""JSON text with a repeated key in one object refused, for every input path.

The standard `json` module keeps the last of two equal keys, so a snapshot
with two ``"capacity"`` keys in one agent silently lost the first. Every
reader of user JSON (CLI files, HTTP bodies, MCP arguments, batch inputs)
goes through :func:`loads`, which raises :class:`DuplicateKeyError` naming the
key's path (``agents.0.capacity``); the front ends turn it into their typed
error (exit 2, HTTP 422, an MCP tool error) naming that path.

Cost: the duplicate test is an ``object_pairs_hook`` (one small Python call per
JSON object); only a text that has a duplicate is read a second time, to find
where.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DUPLICATE_MARK", "DuplicateKeyError", "loads", "mark_duplicate_arguments"]


class DuplicateKeyError(json.JSONDecodeError):
    """A JSON object repeats `key`; `path` is its dotted path (``agents.0.capacity``).

    A JSONDecodeError, so a caller that refuses malformed JSON refuses this too.
    """

    def __init__(self, key: str, path: str, doc: str) -> None:
        super().__init__(f"duplicate key {key!r} at {path}", doc, 0)
        self.key, self.path = key, path


class _Found(Exception):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _Found
    return out


class _Marked(dict[str, Any]):
    """An object that repeated `dup` (the second reading, to find the path)."""

    dup: str | None = None


def _marked(pairs: list[tuple[str, Any]]) -> _Marked:
    out = _Marked(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                out.dup = k
                break
            seen.add(k)
    return out


def _locate(node: Any, path: tuple[str, ...]) -> tuple[str, tuple[str, ...]] | None:
    """(key, path of its object) of the first repeated key, depth first in text order."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(node, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, _Marked):
            if item.dup is not None:
                return item.dup, where
            stack.extend((v, (*where, k)) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, (*where, str(i))) for i, v in reversed(list(enumerate(item))))
    return None


def loads(text: str | bytes | bytearray, **kwargs: Any) -> Any:
    """`json.loads`, refusing an object that repeats a key (:class:`DuplicateKeyError`)."""
    try:
        return json.loads(text, object_pairs_hook=_unique, **kwargs)
    except _Found:
        pass
    doc = text if isinstance(text, str) else bytes(text).decode("utf-8", errors="replace")
    found = _locate(json.loads(text, object_pairs_hook=_marked, **kwargs), ())
    assert found is not None  # the first reading met a repeated key
    key, where = found
    raise DuplicateKeyError(key, ".".join((*where, key)), doc)


#: The argument :func:`mark_duplicate_arguments` adds to a tool call whose
#: arguments repeat a key: its value is the key's path within the arguments.
DUPLICATE_MARK = "__duplicate_key__"


def mark_duplicate_arguments(text: str | bytes) -> str | bytes | None:
    """A JSON-RPC message (MCP) whose ``params.arguments`` repeat a key, rewritten with
    ``DUPLICATE_MARK`` added to the arguments (the tool then refuses the call naming
    the path); None when nothing needs rewriting (no duplicate, not JSON, or a
    duplicate outside the arguments, which the protocol layer reads as it does).

    The MCP SDK parses messages itself (a repeated key: the last one), so the raw
    text is looked at here, before it, and the finding travels in the arguments.
    """
    try:
        loads(text)
    except DuplicateKeyError as e:
        head = "params.arguments."
        if not e.path.startswith(head):
            return None
        data = json.loads(text)
        args = data.get("params", {}).get("arguments")
        if not isinstance(args, dict):
            return None
        args[DUPLICATE_MARK] = e.path.removeprefix(head)
        out = json.dumps(data)
        return out if isinstance(text, str) else out.encode()
    except (ValueError, RecursionError):
        return None
    return None
