"""Which mail the desk takes in, on real-shaped messages (tests/data/autoreplies/)."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from gateway.mail.classify import ListPolicy, Verdict, classify
from gateway.mail.parse import ParsedMail, parse_mail
from gateway.mail.text import UnparseableMail
from tests.support.mails import make_mail
from tests.support.mutations import mutated_mail

AUTOREPLIES = Path(__file__).resolve().parent.parent / "data" / "autoreplies"
CASES = sorted(p.stem for p in AUTOREPLIES.glob("*.eml"))
DESK = {"servicedesk@vtm.example", "noc@vtm.example"}
TOKEN = "servicedesk@vtm.example"


def verdict_of(
    mail: ParsedMail,
    *,
    list_policy: ListPolicy = "ignore",
    is_own_message_id: Callable[[str], bool] = lambda _mid: False,
) -> Verdict:
    return classify(
        mail,
        desk_addresses=DESK,
        loop_token=TOKEN,
        is_own_message_id=is_own_message_id,
        list_policy=list_policy,
    )


def mail_with(**headers: str) -> ParsedMail:
    subject = headers.pop("Subject", "Storing glasvezel Leiden")
    return parse_mail(make_mail(subject=subject, headers=headers))


@pytest.mark.parametrize("name", CASES)
def test_each_sample_mail_gets_its_expected_verdict(name: str) -> None:
    mail = parse_mail((AUTOREPLIES / f"{name}.eml").read_bytes())
    expected = json.loads((AUTOREPLIES / f"{name}.expected.json").read_text(encoding="utf-8"))
    assert verdict_of(mail) == Verdict(**expected)


def test_the_samples_cover_the_senders_we_promise() -> None:
    assert len(CASES) >= 12
    assert all((AUTOREPLIES / f"{name}.expected.json").exists() for name in CASES)


def test_list_mail_is_taken_in_when_the_policy_accepts_lists() -> None:
    post = parse_mail((AUTOREPLIES / "mailman_list_post.eml").read_bytes())
    assert verdict_of(post, list_policy="accept") == Verdict(reason=None)
    assert verdict_of(post, list_policy="ignore").reason == "mailing_list"


def test_accepting_lists_still_ignores_bulk_mail_and_auto_replies() -> None:
    newsletter = parse_mail((AUTOREPLIES / "newsletter.eml").read_bytes())
    assert verdict_of(newsletter, list_policy="accept").reason == "bulk_precedence"
    oof = mail_with(**{"List-Id": "<team.lists.example>", "Auto-Submitted": "auto-replied"})
    assert verdict_of(oof, list_policy="accept") == Verdict("auto_submitted", auto_reply=True)


@pytest.mark.parametrize("header", ["List-Id", "List-Unsubscribe", "List-Post"])
def test_any_list_header_makes_list_mail(header: str) -> None:
    assert verdict_of(mail_with(**{header: "<x.lists.example>"})).reason == "mailing_list"


def test_precedence_list_alone_is_list_mail_not_bulk() -> None:
    mail = mail_with(Precedence="list")
    assert verdict_of(mail).reason == "mailing_list"
    assert verdict_of(mail, list_policy="accept").reason is None


def test_a_message_id_we_generated_is_our_own_mail() -> None:
    mail = parse_mail(make_mail(message_id="VTM-2026-000042.abc@vtm.example"))
    seen: list[str] = []

    def ours(mid: str) -> bool:
        seen.append(mid)
        return mid.endswith("@vtm.example")

    assert verdict_of(mail, is_own_message_id=ours) == Verdict("own_message_id")
    assert seen == ["VTM-2026-000042.abc@vtm.example"]
    assert verdict_of(mail).reason is None


def test_our_loop_header_wins_over_every_other_reason() -> None:
    mail = parse_mail(
        make_mail(
            sender="noc@vtm.example",
            headers={"X-Ticket-Gateway-Loop": "ServiceDesk@vtm.example", "Precedence": "bulk"},
        )
    )
    assert verdict_of(mail, is_own_message_id=lambda _mid: True).reason == "own_loop"


def test_a_loop_header_with_another_token_is_not_ours() -> None:
    mail = mail_with(**{"X-Ticket-Gateway-Loop": "helpdesk@other.example"})
    assert verdict_of(mail).reason is None


def test_our_message_id_comes_before_the_desk_address() -> None:
    mail = parse_mail(make_mail(sender="noc@vtm.example"))
    assert verdict_of(mail, is_own_message_id=lambda _mid: True).reason == "own_message_id"
    assert verdict_of(mail).reason == "from_desk_address"


def test_desk_addresses_match_whatever_their_case() -> None:
    mail = parse_mail(make_mail(sender="Noc@VTM.example"))
    verdict = classify(mail, desk_addresses=["NOC@vtm.example"], loop_token=TOKEN)
    assert verdict.reason == "from_desk_address"


def test_a_bounce_is_a_bounce_even_when_it_says_auto_replied() -> None:
    bounce = parse_mail(make_mail(sender="postmaster@klant.example"))
    assert verdict_of(bounce) == Verdict("bounce")
    failed = mail_with(
        **{"X-Failed-Recipients": "a@klant.example", "Auto-Submitted": "auto-replied"}
    )
    assert verdict_of(failed) == Verdict("bounce")


def test_an_out_of_office_from_a_null_sender_is_still_an_auto_reply() -> None:
    mail = mail_with(**{"Return-Path": "<>", "Subject": "Automatic reply: Storing"})
    assert verdict_of(mail) == Verdict("out_of_office", auto_reply=True)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("auto-replied", "auto_submitted"),
        ("Auto-Generated", "auto_submitted"),
        ("auto-notified", "auto_submitted"),
        ('auto-replied; owner-email="jan@klant.example"', "auto_submitted"),
        ("auto-replied (vacation)", "auto_submitted"),
        ("no", None),
        ("No (written by a person)", None),
        ("no; reason=test", None),
    ],
)
def test_auto_submitted_is_any_keyword_but_no(value: str, reason: str | None) -> None:
    assert verdict_of(mail_with(**{"Auto-Submitted": value})).reason == reason


@pytest.mark.parametrize(
    ("value", "auto_reply"),
    [("auto-replied", True), ("AUTO-REPLIED (vacation)", True), ("auto-generated", False)],
)
def test_only_auto_replied_marks_an_automatic_reply(value: str, auto_reply: bool) -> None:
    assert verdict_of(mail_with(**{"Auto-Submitted": value})).auto_reply is auto_reply


@pytest.mark.parametrize(
    "header", ["X-Autoreply", "X-Autorespond", "X-MS-Exchange-Inbox-Rules-Loop"]
)
def test_auto_reply_headers_mark_an_automatic_reply(header: str) -> None:
    verdict = verdict_of(mail_with(**{header: "yes"}))
    assert verdict == Verdict("auto_reply_header", auto_reply=True)


@pytest.mark.parametrize(
    "subject",
    [
        "Automatisch antwoord: Storing",
        "Afwezig: Storing",
        "Automatic reply: Storing",
        "AUTO-REPLY: Storing",
        "Autoreply: Storing",
        "Out of Office: Storing",
        "Out of Office AutoReply: Storing",
        "Out of the office",
        "Abwesenheitsnotiz: Störung",
        "Automatische Antwort: Störung",
        "Réponse automatique : Panne",
        "Re: Automatic reply: Storing",
        "RE: re: Afwezig: Storing",
    ],
)
def test_out_of_office_subjects_mark_an_automatic_reply(subject: str) -> None:
    assert verdict_of(mail_with(Subject=subject)) == Verdict("out_of_office", auto_reply=True)


@pytest.mark.parametrize(
    "subject",
    [
        "Storing: automatic reply werkt niet",
        "Fwd: Automatic reply: Storing",
        "Afwezigheid monteur",
        "Autoreplying robots",
    ],
)
def test_subjects_that_merely_mention_an_auto_reply_are_taken_in(subject: str) -> None:
    assert verdict_of(mail_with(Subject=subject)).reason is None


@pytest.mark.parametrize(
    ("value", "reason", "auto_reply"),
    [
        ("bulk", "bulk_precedence", False),
        ("Junk", "bulk_precedence", False),
        ("auto_reply", "bulk_precedence", True),
        ("first-class", None, False),
    ],
)
def test_precedence_bulk_or_junk_is_ignored_and_auto_reply_is_an_auto_reply(
    value: str, reason: str | None, auto_reply: bool
) -> None:
    assert verdict_of(mail_with(Precedence=value)) == Verdict(reason, auto_reply=auto_reply)


def test_x_loop_naming_a_desk_address_is_a_loop_and_other_x_loops_are_not() -> None:
    assert verdict_of(mail_with(**{"X-Loop": "<NOC@vtm.example>"})).reason == "x_loop"
    assert verdict_of(mail_with(**{"X-Loop": "yes"})).reason is None
    assert verdict_of(mail_with(**{"X-Loop": "support@leverancier.example"})).reason is None


@pytest.mark.parametrize(
    ("value", "suppress"),
    [
        ("All", True),
        ("DR, RN, NRN, OOF, AutoReply", True),
        ("oof", True),
        ("AutoReply", True),
        ("DR, RN, NRN", False),
        ("None", False),
    ],
)
def test_a_sender_can_ask_for_no_automatic_answers(value: str, suppress: bool) -> None:
    verdict = verdict_of(mail_with(**{"X-Auto-Response-Suppress": value}))
    assert verdict == Verdict(None, suppress_auto_reply=suppress)


def test_a_null_return_path_alone_is_ignored_but_not_an_auto_reply() -> None:
    assert verdict_of(mail_with(**{"Return-Path": "< >"})) == Verdict("empty_return_path")


def test_bulk_precedence_is_ignored_and_plain_mail_is_not() -> None:
    assert verdict_of(mail_with(Precedence="bulk")).reason == "bulk_precedence"
    assert verdict_of(mail_with()).reason is None


SAMPLES = [(AUTOREPLIES / f"{name}.eml").read_bytes() for name in CASES]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_mail(SAMPLES, most=6))
def test_any_parseable_mail_gets_a_verdict(raw: bytes) -> None:
    try:
        mail = parse_mail(raw)
    except UnparseableMail:
        return
    verdict = verdict_of(mail, list_policy="accept")
    assert verdict.reason is not None or not verdict.auto_reply
