"""A customer names the category at the start of the subject or the first line."""

import pytest

from gateway.domain.categories import category_from_mail, named_category
from gateway.domain.model import Category


@pytest.mark.parametrize(
    ("subject", "category", "rest"),
    [
        ("Incident: glasvezel ligt eruit", Category.INCIDENT, "glasvezel ligt eruit"),
        ("STORING - router Leiden", Category.INCIDENT, "router Leiden"),
        ("Wijziging: extra VLAN", Category.CHANGE, "extra VLAN"),
        ("Change request: new IP range", Category.CHANGE, "new IP range"),
        ("Vraag: factuur oktober", Category.SERVICE_REQUEST, "factuur oktober"),
        ("verzoek:nieuwe gebruiker", Category.SERVICE_REQUEST, "nieuwe gebruiker"),
        ("Question: how do I", Category.SERVICE_REQUEST, "how do I"),
        ("Incidentele vraag over de factuur", None, "Incidentele vraag over de factuur"),
        ("Storing", None, "Storing"),  # no colon: the subject itself
        ("Een vraag: over de factuur", None, "Een vraag: over de factuur"),
        ("Incident-nummer 123 van KPN", None, "Incident-nummer 123 van KPN"),
        ("Request-ID 5531 ontbreekt", None, "Request-ID 5531 ontbreekt"),
        ("Vraag-en-antwoord sessie", None, "Vraag-en-antwoord sessie"),
    ],
)
def test_a_leading_word_with_a_colon_names_the_category(
    subject: str, category: Category | None, rest: str
) -> None:
    assert named_category(subject) == (category, rest)


def test_the_first_line_counts_when_the_subject_names_none() -> None:
    assert category_from_mail("Kraan 4", "Storing: sinds 09:00 geen netwerk") == (
        Category.INCIDENT,
        "Kraan 4",
    )
    assert category_from_mail("Wijziging: VLAN", "Vraag: ook dit") == (Category.CHANGE, "VLAN")
