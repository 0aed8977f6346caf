"""Verifying SendGrid's Signed Event Webhook: ECDSA P-256 over timestamp + raw body.

Kept apart from the routes so settings can check the configured key at start-up.
"""

from __future__ import annotations

import base64
import binascii
import functools

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


@functools.lru_cache(maxsize=4)  # parsed once per configured key, not per request
def sendgrid_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """SendGrid shows the key as base64 DER (SubjectPublicKeyInfo); a PEM paste works too."""
    if "BEGIN PUBLIC KEY" in value:
        key = serialization.load_pem_public_key(value.encode())
    else:
        key = serialization.load_der_public_key(base64.b64decode("".join(value.split())))
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("not an ECDSA P-256 public key")
    return key


def sendgrid_signature_ok(key: ec.EllipticCurvePublicKey, signature: str, timestamp: str,
                          body: bytes) -> bool:
    # Over the raw bytes: re-encoding parsed JSON would not reproduce what was signed.
    try:
        key.verify(base64.b64decode(signature, validate=True), timestamp.encode() + body,
                   ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True
