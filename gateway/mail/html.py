"""Plain text from HTML mail bodies: what a reader sees, with links kept.

Block elements start a line (paragraphs and headings leave a blank line), <br> breaks
the line, list items start with "- " or "1. ", the cells of a table row are separated
by " | ". Scripts, styles and elements hidden by inline CSS (the preheader text of
marketing mail) are left out; when that leaves nothing, the hidden text is shown after
all. A link keeps its target as "text (url)" unless the text already shows it, so a link
whose text names another site than its target shows both.

`html_reply` also notes where the quoted earlier mail starts, by the markup mail clients
put there (`gateway.mail.quotes.quote_marker`). Pure: no I/O, never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

from gateway.mail.quotes import quote_marker, starts_with_reply_header

_PARAGRAPH = {
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote", "pre", "hr",
    "dl", "center", "address", "figure",
}  # fmt: skip
_LINE = {
    "div", "tr", "ul", "ol", "dt", "dd", "section", "article", "header", "footer",
    "main", "nav", "aside", "caption", "form", "fieldset", "figcaption", "details",
    "summary",
}  # fmt: skip
_CELLS = {"td", "th"}
_SKIP = {"script", "style", "title", "template", "xml", "noframes"}
_VOID = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
    "param", "source", "track", "wbr",
}  # fmt: skip
_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|mso-hide\s*:\s*all"
    r"|(?:max-height|opacity)\s*:\s*0(?![.\d]*[1-9])",
    re.IGNORECASE,
)
# HTML's own whitespace; a no-break space is text (an "empty" Outlook line holds one).
_HTML_SPACE = " \t\n\r\f"
_SPACE_RUN = re.compile(r"[ \t\n\r\f]+")
_SPACES = re.compile(r"[ \t\r\f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")
# Zero-width and invisible characters: preheader filler, soft hyphens.
_INVISIBLE = re.compile(r"[\u00ad\u034f\u180e\u200b-\u200d\u2060\ufeff]")
_URL_NOISE = re.compile(r"^(?:https?://)?(?:www\.)?|/+$", re.IGNORECASE)
_MAX_HEADER_PEEK = 60  # output pieces read after an Outlook divider to find its header


@dataclass(frozen=True)
class HtmlReply:
    text: str  # the whole conversion
    before_quote: str | None  # the text before the quoted earlier mail, when marked


class _TextExtractor(HTMLParser):
    def __init__(self, *, show_hidden: bool = False) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.hid_text = False  # hidden elements held text
        self.quote_at: int | None = None  # len(out) where a quote marker started
        self.header_dividers: list[int] = []  # len(out) at Outlook's border-top dividers
        self._show_hidden = show_hidden
        self._ignored: str | None = None  # the tag of the skipped or hidden element we are in
        self._ignored_depth = 0
        self._ignored_hidden = False
        self._breaks = 0  # newlines owed before the next text
        self._marker = ""  # list item marker owed before the next text
        self._separator = ""  # cell separator owed before the next text
        self._row_has_text = False
        self._lists: list[list[int]] = []  # [ordered (0/1), items so far] per open list
        self._pre = 0  # depth of <pre>: whitespace kept
        self._paragraph_lines = 2  # newlines after the open <p>
        self._href: str | None = None
        self._link_start = 0

    # -- output --------------------------------------------------------------------------

    def _break(self, lines: int) -> None:
        if not self._marker:
            self._breaks = max(self._breaks, lines)

    def _emit(self, text: str) -> None:
        if self._breaks:
            if self.out:
                self.out.append("\n" * self._breaks)
            self._breaks, self._separator = 0, ""
        if not self.out or self.out[-1].endswith("\n"):
            text = text.lstrip(_HTML_SPACE)  # a line starts with its text, or its list marker
            if not text:
                return
        if self._separator:
            self.out.append(self._separator)
            self._separator = ""
        if self._marker:
            self.out.append(self._marker)
            self._marker = ""
        self.out.append(text)
        self._row_has_text = True

    # -- elements ------------------------------------------------------------------------

    def _start_ignoring(self, tag: str, *, hidden: bool) -> None:
        self._ignored, self._ignored_depth, self._ignored_hidden = tag, 1, hidden

    def _is_hidden(self, attrs: dict[str, str | None]) -> bool:
        if self._show_hidden:
            return False
        return "hidden" in attrs or bool(_HIDDEN_STYLE.search(attrs.get("style") or ""))

    def handle_starttag(self, tag: str, attr_list: list[tuple[str, str | None]]) -> None:
        if self._ignored is not None:
            if tag == self._ignored and tag not in _VOID:
                self._ignored_depth += 1
            return
        attrs = dict(attr_list)
        if tag in _SKIP or self._is_hidden(attrs):
            if tag not in _VOID:
                self._start_ignoring(tag, hidden=tag not in _SKIP)
            return
        self._note_quote(tag, attrs)
        self._open(tag, attrs)

    def _note_quote(self, tag: str, attrs: dict[str, str | None]) -> None:
        if self.quote_at is not None:
            return
        marker = quote_marker(tag, attrs)
        if marker == "quote":
            self.quote_at = len(self.out)
        elif marker == "header":
            self.header_dividers.append(len(self.out))

    def _open(self, tag: str, attrs: dict[str, str | None]) -> None:
        if tag == "br":
            self._breaks += 1
        elif tag == "p":
            # Outlook's paragraphs are lines: MsoNormal has no margin.
            self._paragraph_lines = 1 if "MsoNormal" in (attrs.get("class") or "") else 2
            self._break(self._paragraph_lines)
        elif tag in _PARAGRAPH:
            self._break(2)
            if tag == "pre":
                self._pre += 1
        elif tag in ("ul", "ol"):
            self._break(1)
            self._lists.append([tag == "ol", _list_start(attrs.get("start"))])
        elif tag == "li":
            self._list_item()
        elif tag == "tr":
            self._break(1)
            self._row_has_text = False
        elif tag in _CELLS and self._row_has_text:
            self._separator = " | "
        elif tag in _LINE:
            self._break(1)
        elif tag == "a":
            self._href = (attrs.get("href") or "").strip()
            self._link_start = len(self.out)

    def _list_item(self) -> None:
        self._break(1)
        if not self._lists:
            self._lists.append([0, 0])
        current = self._lists[-1]
        current[1] += 1
        indent = "  " * (len(self._lists) - 1)
        self._marker = f"{indent}{current[1]}. " if current[0] else f"{indent}- "

    def handle_endtag(self, tag: str) -> None:
        if self._ignored is not None:
            if tag == self._ignored:
                self._ignored_depth -= 1
                if not self._ignored_depth:
                    self._ignored = None
            return
        if tag in ("ul", "ol"):
            if self._lists:
                self._lists.pop()
            self._marker = ""
            self._break(1)
        elif tag == "a":
            self._close_link()
        elif tag == "p":
            self._break(self._paragraph_lines)
        elif tag in _PARAGRAPH:
            if tag == "pre":
                self._pre = max(0, self._pre - 1)
            self._break(2)
        elif tag in _LINE or tag == "li":
            self._break(1)

    def _close_link(self) -> None:
        href, self._href = self._href, None
        if not href or not href.lower().startswith(("http:", "https:")):
            return
        text = _SPACE_RUN.sub(" ", "".join(self.out[self._link_start :])).strip()
        if text and not _shows(text, href):
            self.out.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if self._ignored is not None:
            self.hid_text = self.hid_text or (self._ignored_hidden and bool(data.strip()))
            return
        if self._pre:
            self._emit(data)
        elif data.strip(_HTML_SPACE):
            self._emit(_SPACE_RUN.sub(" ", data))
        elif self.out and not self._breaks and not self.out[-1].endswith((" ", "\n")):
            self.out.append(" ")


def _list_start(value: str | None) -> int:
    try:
        return max(0, int(value or "1") - 1)
    except ValueError:
        return 0


def _shows(text: str, href: str) -> bool:
    """Whether the link text already shows where the link goes."""
    target = _URL_NOISE.sub("", href).lower()
    return target in _URL_NOISE.sub("", text).lower()


def _line(line: str) -> str:
    """A line with its spaces collapsed; its indentation (nested list items) kept."""
    text = line.lstrip(" ")
    indent = line[: len(line) - len(text)]
    text = _SPACES.sub(" ", text).strip()
    return indent + text if text else ""


def _finish(pieces: list[str]) -> str:
    text = _INVISIBLE.sub("", "".join(pieces))
    lines = [_line(line) for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _extract(html: str, *, show_hidden: bool) -> _TextExtractor:
    parser = _TextExtractor(show_hidden=show_hidden)
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser is lenient; a bug there must not cost the text
        pass
    return parser


def _quote_start(parser: _TextExtractor) -> int | None:
    """Where the quoted earlier mail starts in the output, if the markup says so."""
    starts = [] if parser.quote_at is None else [parser.quote_at]
    for at in parser.header_dividers:
        if starts_with_reply_header(_finish(parser.out[at : at + _MAX_HEADER_PEEK])):
            starts.append(at)
            break
    return min(starts, default=None)


def html_reply(html: str) -> HtmlReply:
    """The text of an HTML body, and the part of it before the quoted earlier mail."""
    parser = _extract(html, show_hidden=False)
    text = _finish(parser.out)
    if not text and parser.hid_text:  # everything was hidden: show it rather than nothing
        parser = _extract(html, show_hidden=True)
        text = _finish(parser.out)
    start = _quote_start(parser)
    return HtmlReply(text, None if start is None else _finish(parser.out[:start]))


def html_to_text(html: str) -> str:
    """Readable text from an HTML body: tags dropped, links kept as `text (url)`."""
    return html_reply(html).text
