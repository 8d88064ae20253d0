"""The one place credentials are taken out of text the product shows, writes or sends.

`redact(text, secrets)` is applied by the agent to every message it prints,
logs, writes to status.json (`error`, `hookError`) or reports, and by the
control plane to every report it stores, so a password given in an endpoint
URL, an `Authorization` header echoed back in an error page, or a secret the
agent knows (its `auth` password or token) never reaches a page or a file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

MASK = "***"
# scheme://user:password@host or scheme://user@host: the userinfo goes, the rest stays readable.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s@?#\"'<>]+)@")
# Authorization: Basic dXNlcjpwdw== / Bearer TOKEN / Digest username="…", response="…"
_AUTH_HEADER = re.compile(
    r"(?i)\b(?P<name>(?:proxy-)?authorization)(?P<sep>\"?\s*[:=]\s*\"?)"
    r"(?:digest\s+(?:\w+=(?:\"[^\"]*\"|[^,\s\"]+)(?:\s*,\s*)?)+|\w+\s+[^\s\"',;)}]+|[^\s\"',;)}]+)"
)
_SCHEME_VALUE = re.compile(r"(?i)\b(?P<scheme>basic|bearer|token)\s+[A-Za-z0-9._~+/=-]{8,}")
_PARAM = re.compile(
    r"(?i)\b(?P<name>password|passwd|pwd|secret|token|access_token|api_key|apikey)"
    r"(?P<sep>\s*=\s*|\"\s*:\s*\")(?P<value>[^\s&\"',;}]+)"
)
MIN_SECRET = 4  # shorter strings would mask ordinary words


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with credentials replaced by `***`: URL userinfo, Authorization values, password=…/token=…
    parameters, and each of `secrets` (as given and percent-encoded) wherever it appears."""
    if not text:
        return text
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            text = text.replace(form, MASK)
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m.group('name')}{m.group('sep')}{MASK}", text)
    text = _SCHEME_VALUE.sub(lambda m: f"{m.group('scheme')} {MASK}", text)
    return _PARAM.sub(lambda m: f"{m.group('name')}{m.group('sep')}{MASK}", text)


def redact_value(value: object, secrets: Iterable[str] = ()) -> object:
    """`redact` applied to every string inside a JSON-like value (a status or report body)."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, list):
        return [redact_value(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: redact_value(v, secrets) for k, v in value.items()}
    return value
