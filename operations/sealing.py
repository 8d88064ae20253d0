"""Keys outside the database and the bucket: secrets sealed in registry backups, and each backup signed.

A backup holds every server's agent token and every user's password hash;
they are encrypted (Fernet: AES-128-CBC with HMAC-SHA256) with a key derived
from `DMSUPDATE_BACKUP_KEY` (else `DMSUPDATE_SECRET_KEY`), never stored beside
them. A backup is signed (HMAC-SHA256 over its key, its SHA-256 and the audit
chain's head at that time) in `KEY.sig`, so restore refuses, before reading a
line of it, a file it did not write (planted, swapped, renamed, or cut).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

from audit.services import Anchor

# Fields a backup holds sealed, by model.
SECRET_FIELDS = {
    "auth.user": ("password",),
    "servers.server": ("agent_token",),
    "notifications.webhook": ("secret",),
}
SEALED = "sealed:"


class SealError(Exception):
    """A sealed value or a signature does not match this deployment's key."""


def _material(purpose: bytes) -> bytes:
    secret = (settings.DMSUPDATE.get("BACKUP_KEY") or settings.SECRET_KEY).encode()
    return hashlib.sha256(b"dmsupdate-backup-" + purpose + b"\0" + secret).digest()


def seal(value: str) -> str:
    if not value:
        return value
    fernet = Fernet(base64.urlsafe_b64encode(_material(b"seal")))
    return SEALED + fernet.encrypt(value.encode()).decode()


def unseal(value: str) -> str:
    if not value or not value.startswith(SEALED):
        raise SealError("a secret in the backup is not sealed")
    try:
        return Fernet(base64.urlsafe_b64encode(_material(b"seal"))).decrypt(value[len(SEALED) :]).decode()
    except InvalidToken as exc:
        raise SealError("a sealed secret does not open with this deployment's backup key") from exc


def _mac(key: str, sha256: str, anchor: dict | None) -> str:
    message = json.dumps({"key": key, "sha256": sha256, "audit_head": anchor}, sort_keys=True).encode()
    return hmac.new(_material(b"sign"), message, hashlib.sha256).hexdigest()


def signature(key: str, sha256: str, anchor: Anchor | None) -> bytes:
    """The `.sig` object written beside a backup."""
    head = {"id": anchor.id, "hash": anchor.hash} if anchor else None
    return json.dumps(
        {"key": key, "sha256": sha256, "audit_head": head, "hmac": _mac(key, sha256, head)}
    ).encode()


def check_signature(raw: bytes, key: str) -> dict[str, Any]:
    """The signed fields of a `.sig` object for `key` (sha256, audit_head); SealError when it is not ours."""
    try:
        sig = json.loads(raw)
        expected = _mac(key, sig["sha256"], sig["audit_head"])
        ok = sig["key"] == key and hmac.compare_digest(expected, str(sig["hmac"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise SealError(f"the signature of {key} is unreadable") from exc
    if not ok:
        raise SealError(f"the signature of {key} was not made with this deployment's backup key")
    return sig


def anchor_of(sig: dict[str, Any]) -> Anchor | None:
    head = sig.get("audit_head")
    return Anchor(int(head["id"]), str(head["hash"])) if head else None
