"""Signed Message-IDs: ours name their ticket; forged or foreign ones name nothing."""

import pytest

from gateway.domain.msgid import MessageIdSigner, OwnMessageId

KEY = b"k" * 32
OLD_KEY = b"o" * 32


@pytest.fixture
def signer() -> MessageIdSigner:
    return MessageIdSigner([KEY], "vtm.example")


def test_message_ids_are_unique_and_carry_their_reference(signer: MessageIdSigner) -> None:
    ids = {signer.new("VTM-2026-000001") for _ in range(200)}
    assert len(ids) == 200
    for mid in ids:
        assert mid.startswith("VTM-2026-000001.") and mid.endswith("@vtm.example")
        assert signer.verify(mid) == OwnMessageId(reference="VTM-2026-000001")


def test_a_message_id_without_a_ticket_verifies_without_a_reference(
    signer: MessageIdSigner,
) -> None:
    assert signer.verify(signer.new()) == OwnMessageId(reference=None)


def test_another_reference_in_a_real_message_id_is_a_forgery(signer: MessageIdSigner) -> None:
    mid = signer.new("VTM-2026-000001")
    forged = mid.replace("VTM-2026-000001", "VTM-2026-000002")
    assert signer.verify(forged) is None
    assert signer.looks_own(forged)


def test_a_made_up_nonce_or_mac_does_not_verify(signer: MessageIdSigner) -> None:
    mid = signer.new("VTM-2026-000001")
    head, _, domain = mid.partition("@")
    reference, nonce, mac = head.split(".")
    assert signer.verify(f"{reference}.{'0' * len(nonce)}.{mac}@{domain}") is None
    assert signer.verify(f"{reference}.{nonce}.{'0' * len(mac)}@{domain}") is None


def test_a_message_id_signed_with_another_key_is_not_ours(signer: MessageIdSigner) -> None:
    theirs = MessageIdSigner([b"x" * 32], "vtm.example").new("VTM-2026-000001")
    assert signer.verify(theirs) is None


def test_ids_signed_with_a_previous_key_still_verify_after_rotation() -> None:
    old = MessageIdSigner([OLD_KEY], "vtm.example").new("VTM-2026-000007")
    rotated = MessageIdSigner([KEY, OLD_KEY], "vtm.example")
    assert rotated.verify(old) == OwnMessageId(reference="VTM-2026-000007")
    assert MessageIdSigner([KEY], "vtm.example").verify(rotated.new("VTM-2026-000008"))


def test_foreign_domains_are_not_ours_even_with_our_shape(signer: MessageIdSigner) -> None:
    mid = signer.new("VTM-2026-000001").replace("@vtm.example", "@evil.example")
    assert signer.verify(mid) is None
    assert not signer.looks_own(mid)
    assert not signer.looks_own("CAF=abc123@mail.gmail.com")


def test_the_domain_compares_case_insensitively(signer: MessageIdSigner) -> None:
    mid = signer.new("VTM-2026-000001")
    assert signer.verify(mid.replace("@vtm.example", "@VTM.Example")) is not None


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        MessageIdSigner([b"short"], "vtm.example")
