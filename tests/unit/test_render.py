from pathlib import Path
from typing import Any

import pytest

from gateway.config import PACKAGE_ROOT
from gateway.notify.render import Renderer

TEMPLATES = PACKAGE_ROOT / "templates"
EVENTS = ["created", "info_added", "reopened", "agent_reply", "info_needed", "on_hold",
          "scheduled", "awaiting_acceptance", "closed", "team_notice", "attachment_refused",
          "reminder", "page"]  # fmt: skip


def context(**extra: Any) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "language": "nl",
        "recipient_name": "Jan de Vries",
        "body": "",
        "effect": "",
        "notice": "Klant heeft gereageerd",
        "author": "jan@klant.example",
        "scheduled_for": "",
        "ticket": {"reference": "VTM-2026-000042", "tag": "[VTM-2026-000042]",
                   "subject": "Storing glasvezel", "status": "open", "status_label": "Open",
                   "priority": None},
        "team": {"key": "noc", "name": "Network Operations Center (NOC)",
                 "phone": "0174 75 26 90", "address": "noc@vtm.example"},
        "desk": {"sender_name": "VTM Servicedesk", "reopen_days": 14},
        "support": {"desk_open": True, "next_opening": "", "oncall_phone": ""},
        "files": [{"name": "offerte.pdf", "size": "30 MB"}],
        "limits": {"attachment": "20 MB", "message": "25 MB"},
        "close_on": "2026-12-04 08:30",
        "customer": "Ziekenhuis West",
    }  # fmt: skip
    ctx.update(extra)
    return ctx


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


@pytest.mark.parametrize("language", ["nl", "en"])
@pytest.mark.parametrize("event", EVENTS)
def test_every_event_renders_in_both_languages_with_the_tag_in_the_subject(
    renderer: Renderer, event: str, language: str
) -> None:
    rendered = renderer.render(event, language, context(language=language, body="Tekst"))
    assert rendered.subject.startswith("[VTM-2026-000042] ")
    assert "\n" not in rendered.subject
    assert "VTM-2026-000042" in rendered.text
    assert rendered.html.startswith("<!DOCTYPE html>")
    assert f'lang="{language}"' in rendered.html


def test_creation_notice_names_reference_and_team_phone(renderer: Renderer) -> None:
    nl = renderer.render("created", "nl", context())
    assert "referentienummer\nVTM-2026-000042" in nl.text or "VTM-2026-000042" in nl.text
    assert "0174 75 26 90" in nl.text
    assert nl.subject == "[VTM-2026-000042] Uw melding is ontvangen: Storing glasvezel"
    en = renderer.render("created", "en", context(language="en"))
    assert en.subject == "[VTM-2026-000042] We have received your request: Storing glasvezel"
    assert "0174 75 26 90" in en.text


def test_html_part_escapes_text_from_mail(renderer: Renderer) -> None:
    hostile = '<script>alert("x")</script> & <b>bold</b>'
    rendered = renderer.render("agent_reply", "nl", context(body=hostile))
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;" in rendered.html
    assert hostile in rendered.text  # the text part is plain text, unescaped


def test_awaiting_acceptance_tells_the_customer_to_reply_akkoord(renderer: Renderer) -> None:
    assert '"Akkoord"' in renderer.render("awaiting_acceptance", "nl", context()).text
    assert '"Accepted"' in renderer.render("awaiting_acceptance", "en", context()).text


def test_unknown_language_falls_back_to_dutch(renderer: Renderer) -> None:
    rendered = renderer.render("created", "de", context())
    assert "Uw melding is ontvangen" in rendered.subject


def test_missing_variable_is_an_error_not_an_empty_string(tmp_path: Path) -> None:
    (tmp_path / "nl").mkdir()
    (tmp_path / "nl" / "x.txt").write_text("{% block subject %}s{% endblock %}{{ nope }}")
    (tmp_path / "nl" / "_layout.html").write_text("{{ subject }}")
    with pytest.raises(Exception, match="nope"):
        Renderer(tmp_path).render("x", "nl", {})


@pytest.mark.parametrize("language", ["nl", "en"])
def test_outside_office_hours_the_notice_says_when_and_24x7_gets_the_number(
    renderer: Renderer, language: str
) -> None:
    closed = {"desk_open": False, "next_opening": "NEXT", "oncall_phone": ""}
    text = renderer.render("created", language, context(support=closed)).text
    assert "NEXT" in text and "085" not in text
    on_call = {**closed, "oncall_phone": "085 489 09 73"}
    assert "085 489 09 73" in renderer.render("created", language, context(support=on_call)).text


@pytest.mark.parametrize("effect", ["no_answer", "accepted_by_silence"])
def test_closing_for_silence_says_why(renderer: Renderer, effect: str) -> None:
    text = renderer.render("closed", "nl", context(effect=effect)).text
    assert ("geen antwoord" in text) is (effect == "no_answer")
    assert ("als geaccepteerd" in text) is (effect == "accepted_by_silence")


def test_templates_are_chosen_once_per_event_and_a_new_renderer_sees_new_files(
    tmp_path: Path,
) -> None:
    """The choice of an event's templates is kept, including that it has no HTML of its
    own (Jinja does not cache a template it did not find, so that was a look on disk per
    notification); a reload builds a new Renderer, which sees files added since."""
    (tmp_path / "nl").mkdir()
    (tmp_path / "nl" / "created.txt").write_text("{% block subject %}Nieuw{% endblock %}Tekst\n")
    (tmp_path / "nl" / "_layout.html").write_text("<p>layout</p>")
    renderer = Renderer(tmp_path)
    assert renderer.render("created", "nl", {}).html == "<p>layout</p>"
    (tmp_path / "nl" / "created.html").write_text("<p>eigen</p>")
    assert renderer.render("created", "nl", {}).html == "<p>layout</p>"
    assert Renderer(tmp_path).render("created", "nl", {}).html == "<p>eigen</p>"
