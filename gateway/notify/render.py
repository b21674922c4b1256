"""Render notifications: a text template per event, and an HTML alternative.

`templates/<language>/<event>.txt` holds the text with a `subject` block. The HTML
part comes from `<event>.html` when it exists, else from `_layout.html` wrapping the
rendered text; either way HTML is autoescaped, so text from mail cannot inject markup.
Environments and compiled templates are cached: nothing is loaded per message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
)


class TemplateMissing(Exception):
    """No template for this event in this language (nor in the fallback language)."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class Renderer:
    def __init__(self, templates_path: Path, fallback_language: str = "nl") -> None:
        loader = FileSystemLoader(str(templates_path))
        common: dict[str, Any] = {
            "loader": loader,
            "undefined": StrictUndefined,
            "trim_blocks": True,
            "lstrip_blocks": True,
            "keep_trailing_newline": True,
            "auto_reload": False,
        }
        self._text = Environment(autoescape=False, **common)
        self._html = Environment(autoescape=True, **common)
        self._fallback = fallback_language
        # (event, language) -> its text and HTML templates. Jinja caches the templates
        # it found, not the ones it did not: without this, every notification of an
        # event without its own .html looked for that file on disk again. A reload
        # (SIGHUP) builds a new Renderer.
        self._chosen_text: dict[tuple[str, str], tuple[str, Template]] = {}
        self._chosen_html: dict[tuple[str, str], Template] = {}

    def check(self) -> None:
        """Every template compiles, in the environment that will render it, and there
        are some for the desk's language; ValueError saying which one fails. Compiled
        templates stay cached."""
        names = self._text.list_templates()
        if not any(name.startswith(f"{self._fallback}/") for name in names):
            raise ValueError(f"templates: none for desk.language {self._fallback!r}")
        for name in names:
            environment = self._html if name.endswith(".html") else self._text
            try:
                environment.get_template(name)
            except TemplateError as exc:
                line = getattr(exc, "lineno", None)
                raise ValueError(f"template {name}{f':{line}' if line else ''}: {exc}") from exc

    def _language(self, event: str, language: str) -> str:
        for candidate in (language, self._fallback):
            try:
                self._text.get_template(f"{candidate}/{event}.txt")
            except TemplateNotFound:
                continue
            return candidate
        raise TemplateMissing(f"no template {event}.txt for {language} or {self._fallback}")

    def _text_template(self, event: str, language: str) -> tuple[str, Template]:
        """The language used for `event` and its text template."""
        try:
            return self._chosen_text[(event, language)]
        except KeyError:
            pass
        lang = self._language(event, language)
        chosen = self._chosen_text[(event, language)] = (
            lang,
            self._text.get_template(f"{lang}/{event}.txt"),
        )
        return chosen

    def _html_template(self, event: str, lang: str) -> Template:
        """The event's own HTML template, else the layout."""
        try:
            return self._chosen_html[(event, lang)]
        except KeyError:
            pass
        try:
            html = self._html.get_template(f"{lang}/{event}.html")
        except TemplateNotFound:
            html = self._html.get_template(f"{lang}/_layout.html")
        self._chosen_html[(event, lang)] = html
        return html

    def render(self, event: str, language: str, context: dict[str, Any]) -> Rendered:
        """Subject, text and HTML of one notification."""
        lang, template = self._text_template(event, language)
        ctx = template.new_context(dict(context))
        subject = " ".join("".join(template.blocks["subject"](ctx)).split())
        text = template.render(context).strip() + "\n"
        html_template = self._html_template(event, lang)
        html = html_template.render(
            {**context, "subject": subject, "paragraphs": _paragraphs(text)}
        )
        return Rendered(subject=subject, text=text, html=html)


def _paragraphs(text: str) -> list[list[str]]:
    """Text split into paragraphs of lines, for the HTML layout."""
    blocks = [block for block in text.strip().split("\n\n") if block.strip()]
    return [block.split("\n") for block in blocks]


def human_size(size: int) -> str:
    """1536 -> "1.5 KB", 26214400 -> "25 MB" (binary multiples, as mail clients show)."""
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
