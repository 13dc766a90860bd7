"""A tolerant reader of the bash-like ``KEY=value`` files of the packages tree.

``defines`` and ``spec`` files are bash fragments, but what we need from them is only
the assignments: ``KEY=value``, ``KEY="value"``, ``KEY='value'``, ``KEY+=value``,
``KEY=(a b)``, with values that may span lines (inside quotes or after a ``\\``),
``$NAME`` / ``${NAME}`` expansion of earlier assignments, and ``#`` comments.
Anything else (``if``, function calls, command substitution) is skipped, never an
error: ACBS is the judge of a file's validity, we only read what it declares.
"""

from __future__ import annotations

import re

_ASSIGN_RE = re.compile(r"(?:export[ \t]+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<append>\+?)=")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD_END = frozenset(" \t\r\n;")
_DOUBLE_QUOTE_ESCAPES = frozenset('$`"\\')


def parse_assignments(text: str) -> dict[str, str]:
    """Every variable the file assigns, in order, with its final value."""
    return _Reader(text).read()


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.variables: dict[str, str] = {}

    def read(self) -> dict[str, str]:
        while self._skip_separators():
            if self._peek() == "#":
                self._skip_comment()
                continue
            match = _ASSIGN_RE.match(self.text, self.pos)
            if match:
                self.pos = match.end()
                value = self._value()
                name = match["name"]
                if match["append"]:
                    value = self.variables.get(name, "") + value
                self.variables[name] = value
            self._skip_rest_of_statement()
        return self.variables

    # -- positions ----------------------------------------------------------------

    def _peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ""

    def _skip_separators(self) -> bool:
        """Skip blanks, newlines, ``;`` and line continuations; False at the end."""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t\n\r;":
                self.pos += 1
            elif char == "\\" and self._peek(1) == "\n":
                self.pos += 2
            else:
                return True
        return False

    def _skip_comment(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end

    def _skip_rest_of_statement(self) -> None:
        """Discard the words up to the end of the line or a ``;``, quotes respected."""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t\r":
                self.pos += 1
            elif char == "\\" and self._peek(1) == "\n":
                self.pos += 2
            elif char in "\n;":
                return
            elif char == "#":
                self._skip_comment()
                return
            else:
                self._word()

    # -- values -------------------------------------------------------------------

    def _value(self) -> str:
        if self._peek() == "(":
            return self._array()
        return self._word()

    def _array(self) -> str:
        """``(a "b c" d)`` reads as the words joined by spaces."""
        self.pos += 1
        words: list[str] = []
        while self._skip_separators():
            char = self.text[self.pos]
            if char == ")":
                self.pos += 1
                break
            if char == "#":
                self._skip_comment()
                continue
            words.append(self._word(stop=")"))
        return " ".join(words)

    def _word(self, stop: str = "") -> str:
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in _WORD_END or char in stop:
                break
            if char == "'":
                out.append(self._single_quoted())
            elif char == '"':
                out.append(self._double_quoted())
            elif char == "\\":
                following = self._peek(1)
                self.pos += 2
                if following != "\n":
                    out.append(following)
            elif char == "$":
                out.append(self._expansion())
            elif char == "`":
                self._skip_until("`")
            else:
                out.append(char)
                self.pos += 1
        return "".join(out)

    def _single_quoted(self) -> str:
        end = self.text.find("'", self.pos + 1)
        if end < 0:
            end = len(self.text)
        value = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return value

    def _double_quoted(self) -> str:
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                break
            if char == "\\":
                following = self._peek(1)
                if following == "\n":
                    self.pos += 2
                elif following in _DOUBLE_QUOTE_ESCAPES:
                    out.append(following)
                    self.pos += 2
                else:
                    out.append(char)
                    self.pos += 1
            elif char == "$":
                out.append(self._expansion())
            elif char == "`":
                self._skip_until("`")
            else:
                out.append(char)
                self.pos += 1
        return "".join(out)

    def _expansion(self) -> str:
        """``$NAME``, ``${NAME}``, ``${NAME:-word}``; command substitutions read as ''."""
        following = self._peek(1)
        if following == "{":
            end = self.text.find("}", self.pos + 2)
            if end < 0:
                end = len(self.text)
            inner = self.text[self.pos + 2 : end]
            self.pos = end + 1
            return self._parameter(inner)
        if following == "(":
            self.pos += 1
            self._skip_balanced()
            return ""
        match = _NAME_RE.match(self.text, self.pos + 1)
        if match:
            self.pos = match.end()
            return self.variables.get(match.group(), "")
        if following and following not in _WORD_END and following not in "\"'":
            self.pos += 2  # $1, $@, $$ ...: nothing we know
            return ""
        self.pos += 1
        return "$"

    def _parameter(self, inner: str) -> str:
        match = _NAME_RE.match(inner)
        if not match:
            return ""
        value = self.variables.get(match.group(), "")
        operator = inner[match.end() :]
        if operator.startswith(":-"):
            return value or operator[2:]
        if operator.startswith("-"):
            return value if match.group() in self.variables else operator[1:]
        return value

    def _skip_until(self, closing: str) -> None:
        end = self.text.find(closing, self.pos + 1)
        self.pos = len(self.text) if end < 0 else end + 1

    def _skip_balanced(self) -> None:
        """At ``(``: skip to the matching ``)``."""
        depth = 0
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth == 0:
                    return
