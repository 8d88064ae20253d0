"""Production configuration of the web tier: `gunicorn -c gunicorn.conf.py dmsupdate.wsgi`.

A publication spends most of its time waiting: for PostgreSQL to flush its
two commits and for the object store to take the upload. Threaded workers
overlap those waits, so a few processes keep the CPUs busy; every thread
keeps its own database connection (`DMSUPDATE_DB_CONN_MAX_AGE`), so plan
PostgreSQL's `max_connections` for workers x threads per web host.
"""

from __future__ import annotations

import multiprocessing
import os

bind = os.environ.get("DMSUPDATE_WEB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("DMSUPDATE_WEB_WORKERS") or multiprocessing.cpu_count() * 2)
worker_class = "gthread"
threads = int(os.environ.get("DMSUPDATE_WEB_THREADS") or 4)
# Clients that publish in a loop reuse their connection.
keepalive = 5
