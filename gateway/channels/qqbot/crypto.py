"""The QQ bot's Ed25519: the key derived from the bot secret, op 13 validation answers, push signatures."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def signing_key(secret: str) -> Ed25519PrivateKey:
    """The bot's Ed25519 key: the secret repeated until it has ≥ 32 bytes, the first 32 bytes as the seed."""
    seed = secret.encode("utf-8")
    if not seed:
        raise ValueError("the bot secret is empty")
    while len(seed) < 32:
        seed = seed * 2
    return Ed25519PrivateKey.from_private_bytes(seed[:32])


def validation_signature(key: Ed25519PrivateKey, event_ts: str, plain_token: str) -> str:
    """The op 13 answer's signature: hex Ed25519 of event_ts + plain_token."""
    return key.sign((event_ts + plain_token).encode("utf-8")).hex()


def verify_push(public_key: Ed25519PublicKey, signature_hex: str, timestamp: str, body: bytes) -> bool:
    """True when `X-Signature-Ed25519` signs `X-Signature-Timestamp + body` (the platform's checks included)."""
    try:
        signature = bytes.fromhex(signature_hex.strip())
    except ValueError:
        return False
    # Same checks as the official Go sample: 64 bytes, and the top 3 bits of the last byte clear.
    if len(signature) != 64 or signature[63] & 224 != 0 or not timestamp:
        return False
    try:
        public_key.verify(signature, timestamp.encode("utf-8") + body)
    except InvalidSignature:
        return False
    return True
