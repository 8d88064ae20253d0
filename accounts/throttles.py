"""Rate limits per API token (`DEFAULT_THROTTLE_RATES["token"]`), answered with 429 and Retry-After.

The limit `N/period` is a generic cell rate: a caller may send N requests at
once, and from then on one every period/N seconds. Its state is one row per
caller (`ThrottleBucket`), checked and advanced by a single atomic upsert, so
every web process shares it and concurrent requests cannot both take the last
place. On PostgreSQL the table is UNLOGGED: the upsert writes no WAL, so its
commit does not wait for the disk (after a crash the budgets start afresh).
"""

from __future__ import annotations

import time

from django.db import connection
from rest_framework.throttling import SimpleRateThrottle

from accounts.models import ApiToken, ThrottleBucket

_TABLE = ThrottleBucket._meta.db_table


def _spend_sql() -> str:
    """Take one request's share if the budget allows it; returns a row only when it did."""
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    return (
        f"INSERT INTO {_TABLE} AS b (ident, spent_until) VALUES (%s, %s) "
        f"ON CONFLICT (ident) DO UPDATE SET spent_until = {greatest}(b.spent_until, %s) + %s "
        f"WHERE {greatest}(b.spent_until, %s) + %s <= %s "
        "RETURNING spent_until"
    )


class TokenRateThrottle(SimpleRateThrottle):
    """One budget per token; web sessions count per user and anonymous callers per address."""

    scope = "token"

    def get_cache_key(self, request, view) -> str:
        auth = getattr(request, "auth", None)
        if isinstance(auth, ApiToken):
            ident = f"token-{auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"addr-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request, view) -> bool:
        spending = self.spending(request, view)
        if spending is None:
            return True
        with connection.cursor() as cur:
            cur.execute(*spending)
            if cur.fetchone() is not None:
                return True
        return self.refused(request, view)

    def spending(self, request, view) -> tuple[str, list] | None:
        """The statement taking this request's share, which returns a row only when it did; None: no limit.

        Run by `allow_request`, or by a view that runs it with its own read in
        one statement (head/: the 304 path's only statement after the token's).
        """
        if self.rate is None:
            return None
        ident = self.get_cache_key(request, view)
        if ident is None:
            return None
        now = self.now = time.time()
        step = self.duration / self.num_requests
        return _spend_sql(), [ident, now + step, now, step, now, step, now + self.duration]

    def refused(self, request, view) -> bool:
        """After `spending` took no share: note how long until the next one (Retry-After); False."""
        ident, now = self.get_cache_key(request, view), self.now
        with connection.cursor() as cur:
            cur.execute(f"SELECT spent_until FROM {_TABLE} WHERE ident = %s", [ident])
            row = cur.fetchone()
        spent_until = row[0] if row else now
        step = self.duration / self.num_requests
        self._wait = max(0.0, spent_until + step - self.duration - now)
        return False

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)
