"""QQ bot Ed25519: the official docs' examples as test vectors, and keys generated here."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.channels.qqbot.crypto import signing_key, validation_signature, verify_push
from tests.fakes.qqbot_api import FIXTURES


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_official_callback_validation_example():
    # tencent-connect/bot-docs, interface-framework/event-emit.md: appid 11111111, secret DG5g3B4j9X2KOErG.
    body = json.loads((FIXTURES / "validation.json").read_text(encoding="utf-8"))
    d = body["d"]
    signature = validation_signature(signing_key("DG5g3B4j9X2KOErG"), d["event_ts"], d["plain_token"])
    assert signature == (
        "87befc99c42c651b3aac0278e71ada338433ae26fcb24307bdc5ad38c1adc2d0"
        "1bcfcadc0842edac85e85205028a1132afe09280305f13aa6909ffc2d652c706"
    )


def test_official_key_derivation_example():
    # interface-framework/sign.md: the secret is repeated to 32 bytes and used as the Ed25519 seed.
    key = signing_key("naOC0ocQE3shWLAfffVLB1rhYPG7")
    assert list(raw_public(key)) == [
        215,
        195,
        98,
        254,
        120,
        174,
        248,
        31,
        242,
        50,
        135,
        180,
        147,
        98,
        139,
        93,
        176,
        42,
        60,
        79,
        227,
        11,
        33,
        94,
        77,
        25,
        96,
        155,
        93,
        118,
        103,
        58,
    ]
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert seed == b"naOC0ocQE3shWLAfffVLB1rhYPG7naOC"


def test_long_secret_uses_its_first_32_bytes():
    secret = "x" * 40
    assert raw_public(signing_key(secret)) == raw_public(signing_key("x" * 32))


def test_push_signed_with_a_generated_key_verifies():
    key = Ed25519PrivateKey.generate()
    body = b'{"op":0,"d":{},"t":"C2C_MESSAGE_CREATE"}'
    signature = key.sign(b"1725442341" + body).hex()
    assert verify_push(key.public_key(), signature, "1725442341", body)
    assert not verify_push(key.public_key(), signature, "1725442342", body)  # another timestamp
    assert not verify_push(key.public_key(), signature, "1725442341", body + b" ")  # another body
    assert not verify_push(Ed25519PrivateKey.generate().public_key(), signature, "1725442341", body)


@pytest.mark.parametrize("bad", ["", "zz" * 64, "00" * 63, "00" * 65])
def test_malformed_signatures_are_refused(bad):
    key = Ed25519PrivateKey.generate()
    assert not verify_push(key.public_key(), bad, "1", b"{}")


def test_signature_with_high_bits_in_the_last_byte_is_refused_before_verifying():
    key = Ed25519PrivateKey.generate()
    signature = bytearray(key.sign(b"1{}"))
    signature[63] |= 0xE0  # what the official sample rejects (sig[63] & 224 != 0)
    assert not verify_push(key.public_key(), signature.hex(), "1", b"{}")


def test_validation_signature_verifies_with_the_bot_public_key():
    key = signing_key("qqbotTestSecret0123")
    signature = validation_signature(key, "1725442341", "Arq0D5A61EgUu4OxUvOp")
    assert verify_push(key.public_key(), signature, "1725442341", b"Arq0D5A61EgUu4OxUvOp")
