"""A software security key for tests without a browser: real P-256 keys, CBOR attestation objects ("none"
format), authenticator data and ECDSA signatures as a CTAP2 key makes them, for any origin and RP id, so a
test can also make the answers an attacker would (another origin, a stale counter, no user verification)."""

from __future__ import annotations

import hashlib
import json
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

UP, UV, AT = 0x01, 0x04, 0x40


@dataclass
class SoftKey:
    rp_id: str
    origin: str
    credential_id: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    private: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    sign_count: int = 0

    def _cose(self) -> bytes:
        numbers = self.private.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def _auth_data(self, flags: int, rp_id: str, attested: bytes = b"") -> bytes:
        return hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + struct.pack(">I", self.sign_count) + attested

    @staticmethod
    def _client_data(kind: str, options: dict[str, Any], origin: str) -> bytes:
        return json.dumps({"type": kind, "challenge": options["challenge"], "origin": origin,
                           "crossOrigin": False}).encode()

    def create(self, options: dict[str, Any] | str, *, origin: str | None = None, rp_id: str | None = None,
               verified: bool = True) -> str:
        """The browser's JSON answer to navigator.credentials.create with these (server JSON) options."""
        opts = json.loads(options) if isinstance(options, str) else options
        attested = bytes(16) + struct.pack(">H", len(self.credential_id)) + self.credential_id + self._cose()
        auth_data = self._auth_data(UP | AT | (UV if verified else 0), rp_id or self.rp_id, attested)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client = self._client_data("webauthn.create", opts, origin or self.origin)
        cid = bytes_to_base64url(self.credential_id)
        return json.dumps({"id": cid, "rawId": cid, "type": "public-key", "clientExtensionResults": {},
                           "response": {"clientDataJSON": bytes_to_base64url(client),
                                        "attestationObject": bytes_to_base64url(attestation),
                                        "transports": ["usb"]}})

    def get(self, options: dict[str, Any] | str, *, origin: str | None = None, rp_id: str | None = None,
            verified: bool = True, count: int | None = None) -> str:
        """The answer to navigator.credentials.get; the counter goes up by one unless `count` is given."""
        opts = json.loads(options) if isinstance(options, str) else options
        allowed = [base64url_to_bytes(c["id"]) for c in opts.get("allowCredentials") or []]
        assert not allowed or self.credential_id in allowed, "the server did not offer this key"
        self.sign_count = self.sign_count + 1 if count is None else count
        auth_data = self._auth_data(UP | (UV if verified else 0), rp_id or self.rp_id)
        client = self._client_data("webauthn.get", opts, origin or self.origin)
        signature = self.private.sign(auth_data + hashlib.sha256(client).digest(), ec.ECDSA(hashes.SHA256()))
        cid = bytes_to_base64url(self.credential_id)
        return json.dumps({"id": cid, "rawId": cid, "type": "public-key", "clientExtensionResults": {},
                           "response": {"clientDataJSON": bytes_to_base64url(client),
                                        "authenticatorData": bytes_to_base64url(auth_data),
                                        "signature": bytes_to_base64url(signature)}})
