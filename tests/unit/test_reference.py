import pytest

from gateway.domain.reference import (
    find_reference,
    format_reference,
    strip_reply_prefixes,
    subject_tag,
)

REF = "VTM-2026-000042"


def test_reference_format_is_prefix_year_and_six_digits() -> None:
    assert format_reference("VTM", 2026, 42) == REF
    assert subject_tag(REF) == "[VTM-2026-000042]"


@pytest.mark.parametrize(
    "subject",
    [
        "[VTM-2026-000042] Storing glasvezel",
        "Re: [VTM-2026-000042] Storing glasvezel",
        "RE: AW: [VTM-2026-000042] Storing glasvezel",
        "Antw: [VTM-2026-000042] Uw melding is ontvangen",
        "AW: WG: [VTM-2026-000042] Storing",
        "SV: VS: [VTM-2026-000042] Storing",
        "Fwd: [VTM-2026-000042] Storing",
        "FW: [VTM-2026-000042] Storing",
        "Doorst: [VTM-2026-000042] Storing",
        "re: [vtm-2026-000042] storing",
        "Storing nog steeds niet opgelost (VTM-2026-000042)",
        "Vraag over VTM-2026-000042 en de factuur",
        "Re:[VTM-2026-000042]",
        "RE: Uw melding [VTM 2026 000042] is ontvangen",
        "Re: Storing - referentie vtm-2026-000042, graag spoed",
    ],
)
def test_reference_found_through_reply_prefixes_case_and_rewritten_subjects(subject: str) -> None:
    assert find_reference(subject, "VTM") == REF


@pytest.mark.parametrize(
    "subject",
    [
        "Storing glasvezel Leiden",
        "Re: order 2026-000042",
        "[XVTM-2026-000042] other desk",
        "[VTM-2026-0000421] too many digits",
        "[VTM-26-000042] short year",
        "",
    ],
)
def test_no_reference_in_subjects_without_our_tag(subject: str) -> None:
    assert find_reference(subject, "VTM") is None


def test_first_reference_wins_when_a_subject_holds_two() -> None:
    subject = "Re: [VTM-2026-000007] Re: [VTM-2025-000099] old"
    assert find_reference(subject, "VTM") == "VTM-2026-000007"


def test_prefix_is_configurable() -> None:
    assert find_reference("Re: [ACME-2027-000001] hi", "ACME") == "ACME-2027-000001"
    assert find_reference("Re: [VTM-2027-000001] hi", "ACME") is None


@pytest.mark.parametrize(
    ("subject", "clean"),
    [
        ("Re: RE: AW: Storing", "Storing"),
        ("Antw: Doorst: Vraag", "Vraag"),
        ("Re[2]: Vraag", "Vraag"),
        ("Reparatie nodig", "Reparatie nodig"),
    ],
)
def test_reply_prefixes_are_stripped(subject: str, clean: str) -> None:
    assert strip_reply_prefixes(subject) == clean
