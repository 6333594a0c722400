"""Edit one entry of an array of tables in a TOML text the user wrote, touching nothing else.

Appending adds one ``[[key]]`` table at the end of the text; removing cuts exactly one
table (its header, the comment block sitting right on it, and its keys) out of the text.
Every other byte stays as written: comments, blank lines, key order, quoting, unknown
tables, line endings.

Why text and not a tomlkit document throughout: tomlkit files a comment written above a
table header under the *previous* table, so deleting that table through tomlkit also
deletes the comment the user wrote about the next one. tomlkit renders the new table
(quoting, escapes) and edits the rare inline-array form (``key = [{...}, ...]``).

Every edit is checked before it is returned: the result, parsed, must equal the original
document with exactly that entry added or removed. Anything else (a header look-alike
inside a multi-line string, say) falls back to tomlkit, and failing that is an error:
the caller writes nothing.
"""

from __future__ import annotations

import copy
import re
import tomllib
from typing import Any

import tomlkit
from tomlkit.items import AoT, Array

_ANY_HEADER = re.compile(r"\s*\[")  # a table or array-of-tables header line
_COMMENT = re.compile(r"\s*#")


class EditError(ValueError):
    """The edit could not be made without changing something else."""


def newline_of(text: str) -> str:
    """The text's line ending (``\\r\\n`` if it uses it, else ``\\n``)."""
    return "\r\n" if "\r\n" in text else "\n"


def render_table(key: str, table: dict[str, Any], newline: str = "\n") -> str:
    """``[[key]]`` and the table's keys, in the dict's order, as tomlkit writes them."""
    item = tomlkit.table()
    for name, value in table.items():
        item.add(name, value)
    array = tomlkit.aot()
    array.append(item)
    doc = tomlkit.document()
    doc.add(key, array)
    return tomlkit.dumps(doc).replace("\n", newline)


def append_table(text: str, key: str, table: dict[str, Any]) -> str:
    """``text`` with one more ``[[key]]`` table at its end (or in its inline array)."""
    before = _parse(text)
    expected = copy.deepcopy(before)
    expected.setdefault(key, []).append(table)
    if _headers(text, key, before) is not None:
        newline = newline_of(text)
        body = text if not text or text.endswith("\n") else text + newline
        gap = newline if body.strip() else ""  # a blank line between it and what is above
        result = body + gap + render_table(key, table, newline)
        if _parse(result) == expected:
            return result
    return _checked(_tomlkit_edit(text, key, add=table), expected)


def remove_table(text: str, key: str, index: int) -> str:
    """``text`` without the ``index``-th ``[[key]]`` table (0 = first in the file)."""
    before = _parse(text)
    expected = copy.deepcopy(before)
    del expected[key][index]
    if not expected[key]:
        del expected[key]
    lines = text.splitlines(keepends=True)
    headers = _headers(text, key, before)
    if headers is not None:
        result = "".join(_cut(lines, headers[index]))
        if _parse(result) == expected:
            return result
    return _checked(_tomlkit_edit(text, key, remove=index), expected)


def _headers(text: str, key: str, doc: dict[str, Any]) -> list[int] | None:
    """Line numbers of the ``[[key]]`` headers, or None when they do not match the
    document's entries one for one (an inline array, a look-alike inside a string)."""
    pattern = re.compile(r"\s*\[\[\s*(" + re.escape(key) + r'|"' + re.escape(key) + r'")\s*\]\]'
                         r"\s*(#.*)?")
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if pattern.fullmatch(line)]
    return headers if len(headers) == len(doc.get(key, ())) else None


def _cut(lines: list[str], header: int) -> list[str]:
    """``lines`` without the table whose header is at ``header``.

    The table starts at the comment lines directly above its header (no blank line
    between: they are about it) and ends at its last key line; comments after that are
    left alone (they sit above the next table, or head a section).
    """
    start = header
    while start > 0 and _COMMENT.match(lines[start - 1]):
        start -= 1
    after = header + 1
    while after < len(lines) and not _ANY_HEADER.match(lines[after]):
        after += 1
    end = header + 1  # one past the last line that is neither blank nor a comment
    for i in range(header + 1, after):
        if lines[i].strip() and not _COMMENT.match(lines[i]):
            end = i + 1
    kept_before, kept_after = lines[:start], lines[end:]
    if not kept_before or not kept_before[-1].strip():
        # the blank line that separated it from the next content goes too
        while kept_after and not kept_after[0].strip():
            kept_after.pop(0)
    if not kept_after:  # it was last: no blank lines left dangling at the end
        while kept_before and not kept_before[-1].strip():
            kept_before.pop()
    return kept_before + kept_after


def _tomlkit_edit(text: str, key: str, add: dict[str, Any] | None = None,
                  remove: int | None = None) -> str:
    """The same edit through a tomlkit document (inline arrays, unusual layouts)."""
    doc = tomlkit.parse(text)
    entries = doc.get(key)
    if entries is None:
        doc.add(key, tomlkit.aot())
        entries = doc[key]
    if isinstance(entries, Array):  # key = [{...}, ...]: stays inline
        if add is not None:
            inline = tomlkit.inline_table()
            inline.update(add)
            entries.append(inline)
    elif isinstance(entries, AoT):
        if add is not None:
            table = tomlkit.table()
            table.update(add)
            entries.append(table)
    else:
        raise EditError(f"'{key}' is neither [[{key}]] tables nor an array of tables")
    if remove is not None:
        del entries[remove]
    if len(entries) == 0:
        del doc[key]
    return tomlkit.dumps(doc)


def _parse(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EditError(f"not valid TOML: {exc}") from None


def _checked(result: str, expected: dict[str, Any]) -> str:
    if _parse(result) != expected:
        raise EditError("the edit would change more than that one entry; edit the file by hand")
    return result
