"""Authentication-Results as real providers write them (tests/data/authresults/)."""

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mail.authresults import AuthResults, parse_authentication_results

AUTHRESULTS = Path(__file__).resolve().parent.parent / "data" / "authresults"
CASES = sorted(p.stem for p in AUTHRESULTS.glob("*.json"))
TRUSTED = ["mx.vtm.example"]


def load(name: str) -> dict[str, Any]:
    case: dict[str, Any] = json.loads((AUTHRESULTS / f"{name}.json").read_text(encoding="utf-8"))
    return case


def parsed(*values: str, trusted: list[str] = TRUSTED) -> AuthResults:
    result = parse_authentication_results(values, trusted)
    assert result is not None
    return result


@pytest.mark.parametrize("name", CASES)
def test_each_sample_header_set_gives_its_expected_results(name: str) -> None:
    case = load(name)
    result = parse_authentication_results(case["values"], case["trusted"])
    assert (None if result is None else result.as_dict()) == case["expected"]


def test_the_samples_cover_the_providers_we_promise() -> None:
    assert len(CASES) >= 12
    assert {"gmail_two_signatures", "microsoft365_trusted", "fastmail_split_headers"} <= set(CASES)
    assert {"postfix_opendkim_opendmarc", "forged_untrusted_above"} <= set(CASES)


def test_a_result_inside_a_comment_is_not_a_result() -> None:
    result = parsed("mx.vtm.example; arc=pass (i=1 spf=pass dkim=pass dmarc=pass)")
    assert (result.spf, result.dkim, result.dmarc) == (None, None, None)


def test_only_the_trusted_headers_right_below_the_first_trusted_one_are_read() -> None:
    result = parsed(
        "mx.vtm.example; spf=fail smtp.mailfrom=bank.example",
        "relay.example; spf=pass smtp.mailfrom=bank.example",
        "mx.vtm.example; dkim=pass header.d=bank.example",
    )
    assert (result.spf, result.dkim, result.dkim_domains) == ("fail", None, ())


def test_a_later_trusted_header_does_not_override_the_topmost_one() -> None:
    result = parsed(
        "mx.vtm.example; dkim=fail header.d=bank.example",
        "mx.vtm.example; dkim=pass header.d=bank.example",
    )
    assert (result.dkim, result.dkim_domains) == ("fail", ())


def test_header_i_without_header_d_names_the_signing_domain() -> None:
    result = parsed("mx.vtm.example; dkim=pass header.i=support@Sub.Klant.Example.")
    assert result.dkim_domains == ("sub.klant.example",)


def test_domains_of_passing_signatures_are_listed_once_in_order() -> None:
    result = parsed(
        "mx.vtm.example; dkim=pass header.d=b.example; dkim=pass header.d=a.example; "
        "dkim=pass header.d=B.example; dkim=fail header.d=c.example"
    )
    assert result.dkim_domains == ("b.example", "a.example")


def test_hardfail_is_the_old_name_of_fail() -> None:
    assert parsed("mx.vtm.example; spf=hardfail smtp.mailfrom=x.example").spf == "fail"


def test_as_dict_is_json_ready() -> None:
    result = parsed("mx.vtm.example; dkim=pass header.d=klant.example")
    assert json.loads(json.dumps(result.as_dict())) == result.as_dict()
    assert result.as_dict()["dkim_domains"] == ["klant.example"]


def test_no_values_or_no_trusted_ids_give_none() -> None:
    assert parse_authentication_results([], TRUSTED) is None
    assert parse_authentication_results(["mx.vtm.example; spf=pass"], []) is None


def test_values_may_be_any_iterable() -> None:
    values = (v for v in ["mx.vtm.example; spf=pass smtp.mailfrom=klant.example"])
    result = parse_authentication_results(values, frozenset(TRUSTED))
    assert result is not None and result.spf == "pass"


_SPECIALS = st.sampled_from([*' \t;=()"\\@./<>,:', "spf", "dkim", "dmarc", "pass", "none"])
_REAL_VALUES: list[str] = [value for name in CASES for value in load(name)["values"]]


@st.composite
def _damaged(draw: st.DrawFn) -> str:
    """A real header value cut, with specials or random text spliced in."""
    value = draw(st.sampled_from(_REAL_VALUES))
    cut = draw(st.integers(0, len(value)))
    splice = draw(st.one_of(st.text(max_size=8), st.lists(_SPECIALS, max_size=6).map("".join)))
    return value[:cut] + splice + value[draw(st.integers(cut, len(value))) :]


_VALUES = st.lists(
    st.one_of(st.text(max_size=120), st.lists(_SPECIALS, max_size=40).map("".join), _damaged()),
    max_size=6,
)
_TRUSTED = st.lists(
    st.sampled_from(["", "mx.vtm.example", "mx.google.com", "MX3.messagingengine.com"]),
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(_VALUES, _TRUSTED)
def test_any_header_values_parse_or_give_none_never_raise(
    values: list[str], trusted: list[str]
) -> None:
    result = parse_authentication_results(values, trusted)
    if result is None:
        return
    assert result.authserv_id in {t.lower() for t in trusted}
    for value in (result.spf, result.dkim, result.dmarc):
        assert value is None or (value == value.lower() and value.strip() == value != "")
    assert all(d == d.lower() and "@" not in d for d in result.dkim_domains)
    assert result.dkim == "pass" or not result.dkim_domains
    json.dumps(result.as_dict())
