"""Build logs to HTML: ANSI SGR colour codes become spans, everything else is escaped.

Only classes are emitted (no inline styles, so a strict Content-Security-Policy
holds); ``static/app.js`` has the same converter for the live part of a log. Other
escape sequences (cursor movement, OSC titles) are dropped; a lone carriage return
starts a new line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from markupsafe import Markup, escape

# CSI ... final byte, OSC ... BEL/ST, or a lone two-byte escape.
_ESCAPE_RE = re.compile(
    r"\x1b\[([0-9;:?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]"
)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")

# xterm 256-colour cube and greys -> the nearest of the 16 basic colours
_BASIC_RGB = (
    (0, 0, 0), (205, 49, 49), (13, 188, 121), (229, 229, 16), (36, 114, 200),
    (188, 63, 188), (17, 168, 205), (229, 229, 229), (102, 102, 102), (241, 76, 76),
    (35, 209, 139), (245, 245, 67), (59, 142, 234), (214, 112, 214), (41, 184, 219),
    (255, 255, 255),
)


def _nearest_basic(r: int, g: int, b: int) -> int:
    return min(
        range(16),
        key=lambda i: (_BASIC_RGB[i][0] - r) ** 2 + (_BASIC_RGB[i][1] - g) ** 2
        + (_BASIC_RGB[i][2] - b) ** 2,
    )


def _from_256(n: int) -> int:
    if n < 16:
        return n
    if n >= 232:
        level = 8 + (n - 232) * 10
        return _nearest_basic(level, level, level)
    n -= 16
    steps = (0, 95, 135, 175, 215, 255)
    return _nearest_basic(steps[n // 36], steps[(n // 6) % 6], steps[n % 6])


@dataclass
class Style:
    fg: int | None = None  # 0-15
    bg: int | None = None
    bold: bool = False
    dim: bool = False
    italic: bool = False
    underline: bool = False

    def classes(self) -> list[str]:
        out = []
        if self.fg is not None:
            out.append(f"fg{self.fg}")
        if self.bg is not None:
            out.append(f"bg{self.bg}")
        out += [name for name, on in (("b", self.bold), ("d", self.dim), ("i", self.italic),
                                      ("u", self.underline)) if on]
        return out

    def apply(self, params: str) -> None:
        codes = [int(p) if p.isdigit() else 0 for p in params.replace(":", ";").split(";")]
        i = 0
        while i < len(codes):
            code = codes[i]
            if code == 0:
                self.fg = self.bg = None
                self.bold = self.dim = self.italic = self.underline = False
            elif code == 1:
                self.bold = True
            elif code == 2:
                self.dim = True
            elif code == 3:
                self.italic = True
            elif code == 4:
                self.underline = True
            elif code == 22:
                self.bold = self.dim = False
            elif code == 23:
                self.italic = False
            elif code == 24:
                self.underline = False
            elif 30 <= code <= 37:
                self.fg = code - 30
            elif 90 <= code <= 97:
                self.fg = code - 90 + 8
            elif code == 39:
                self.fg = None
            elif 40 <= code <= 47:
                self.bg = code - 40
            elif 100 <= code <= 107:
                self.bg = code - 100 + 8
            elif code == 49:
                self.bg = None
            elif code in (38, 48) and i + 1 < len(codes):
                colour: int | None = None
                if codes[i + 1] == 5 and i + 2 < len(codes):
                    colour = _from_256(min(codes[i + 2], 255))
                    i += 2
                elif codes[i + 1] == 2 and i + 4 < len(codes):
                    colour = _nearest_basic(*(min(c, 255) for c in codes[i + 2:i + 5]))
                    i += 4
                if colour is not None:
                    if code == 38:
                        self.fg = colour
                    else:
                        self.bg = colour
            i += 1


@dataclass
class AnsiConverter:
    """Converts text chunk by chunk, keeping the style between chunks."""

    style: Style = field(default_factory=Style)

    def convert(self, text: str) -> Markup:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        parts: list[str] = []
        pos = 0
        for match in _ESCAPE_RE.finditer(text):
            self._emit(parts, text[pos:match.start()])
            pos = match.end()
            if match.group(2) == "m":
                self.style.apply(match.group(1) or "0")
        self._emit(parts, text[pos:])
        return Markup("".join(parts))  # noqa: S704  (every part was escaped by _emit)

    def _emit(self, parts: list[str], text: str) -> None:
        text = _CONTROL_RE.sub("", text.replace("\x1b", ""))
        if not text:
            return
        classes = self.style.classes()
        if classes:
            parts.append(f'<span class="{" ".join(classes)}">{escape(text)}</span>')
        else:
            parts.append(str(escape(text)))


def ansi_to_html(text: str) -> Markup:
    """The whole of ``text`` as escaped HTML with colour spans (for inside ``<pre>``)."""
    return AnsiConverter().convert(text)
