"""Settings for the dmsupdate control plane, read from the environment.

Nothing set: SQLite under var/, debug on, ORM broker. Production sets
DATABASE_URL (PostgreSQL), DMSUPDATE_SECRET_KEY and DMSUPDATE_DEBUG=0.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("DMSUPDATE_VAR_DIR", BASE_DIR / "var"))
# SQLite and collected static files live here; made up front so a fresh clone just runs.
(VAR_DIR / "static").mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DMSUPDATE_DEBUG", True)
SECRET_KEY = os.environ.get("DMSUPDATE_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DMSUPDATE_SECRET_KEY must be set when DMSUPDATE_DEBUG is off")
    SECRET_KEY = "dmsupdate-insecure-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("DMSUPDATE_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if not DEBUG else "*")
CSRF_TRUSTED_ORIGINS = env_list("DMSUPDATE_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "audit",
    "accounts",
    "jobs",
    "publications",
    "servers",
    "notifications",
    "operations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "audit.middleware.RequestIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dmsupdate.urls"
WSGI_APPLICATION = "dmsupdate.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            # The tags every app's pages use (badge, reltime, ...); apps add their own libraries.
            "libraries": {"dashboard": "dmsupdate.templatetags.dashboard"},
        },
    },
]

# Connections are kept between requests (opening one costs a PostgreSQL backend
# start, about 10 ms, on every publication otherwise) and checked before reuse,
# so a restarted database costs one reconnect, not an error.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'dmsupdate.sqlite3'}",
        conn_max_age=env_int("DMSUPDATE_DB_CONN_MAX_AGE", 300),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Parameters bound by the server and statements prepared after a few uses:
    # the registry's hot statements (publication, token lookup, throttle) are
    # parsed and planned once per connection instead of once per request; range
    # reads over the registry are planned for their values (dmsupdate.postgres).
    # Behind a transaction-pooling PgBouncer older than 1.21, turn preparing off.
    DATABASES["default"]["OPTIONS"] = {
        "server_side_binding": True,
        "prepare_threshold": 5 if env_bool("DMSUPDATE_DB_PREPARED_STATEMENTS", True) else None,
        **DATABASES["default"].get("OPTIONS", {}),
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default is written by the web server (agents' reports), the worker and its
    # fleet jobs at once. Each transaction takes the write lock when it begins (a read lock
    # upgraded mid-transaction is refused at once, whatever the timeout), waits up to 30 s for
    # it, and readers never block the writer (write-ahead log).
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        **DATABASES["default"].get("OPTIONS", {}),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# One login throttle for every way to log in (the dashboard, the admin, scripts).
AUTHENTICATION_BACKENDS = ["accounts.backends.ThrottledModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("DMSUPDATE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("DMSUPDATE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "dmsupdate.api.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "token": os.environ.get("DMSUPDATE_THROTTLE_TOKEN", "600/min"),
        "login": os.environ.get("DMSUPDATE_THROTTLE_LOGIN", "10/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "dmsupdate API",
    "DESCRIPTION": "Publish updates, watch replay lag and run fleet operations.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs page loads Swagger UI from the app's static files, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "dmsupdate_cache",
    }
}

# Background jobs: django-q2 with the ORM broker unless a Redis URL is given.
Q_BROKER = os.environ.get("DMSUPDATE_Q_BROKER", "orm")
Q_CLUSTER: dict[str, object] = {
    "name": "dmsupdate",
    # The queue's name: deployments (or test runs) sharing one Redis each use their own.
    "cluster_name": os.environ.get("DMSUPDATE_Q_QUEUE") or "dmsupdate",
    "workers": env_int("DMSUPDATE_Q_WORKERS", 2),
    "timeout": env_int("DMSUPDATE_Q_TIMEOUT", 3600),
    "retry": env_int("DMSUPDATE_Q_TIMEOUT", 3600) + 60,
    "max_attempts": 1,
    "catch_up": False,
    "save_limit": 1000,
    "ack_failures": True,
    "poll": 0.5,
}
if Q_BROKER.startswith(("redis://", "rediss://")):
    Q_CLUSTER["redis"] = Q_BROKER
else:
    Q_CLUSTER["orm"] = "default"

DMSUPDATE = {
    # How often the registry is reconciled with each dataset's state root (minutes).
    "SYNC_MINUTES": env_int("DMSUPDATE_SYNC_MINUTES", 5),
    # A server with no report for this long is shown `unreachable` (seconds).
    "REPORT_STALE_SECONDS": env_int("DMSUPDATE_REPORT_STALE_SECONDS", 3600),
    # Publication limits (bytes): raw upload and decompressed gzip content.
    "MAX_UPLOAD_BYTES": env_int("DMSUPDATE_MAX_UPLOAD_BYTES", 256 * 1024 * 1024),
    "MAX_DECOMPRESSED_BYTES": env_int("DMSUPDATE_MAX_DECOMPRESSED_BYTES", 1024 * 1024 * 1024),
    # SPARQL Update bodies (update, postproc), decompressed: held whole in memory by parsers.
    "MAX_UPDATE_BYTES": env_int("DMSUPDATE_MAX_UPDATE_BYTES", 16 * 1024 * 1024),
    # Trigger-and-wait: agents called at once, and how long one may take.
    "TRIGGER_CONCURRENCY": env_int("DMSUPDATE_TRIGGER_CONCURRENCY", 16),
    "TRIGGER_TIMEOUT_SECONDS": env_int("DMSUPDATE_TRIGGER_TIMEOUT_SECONDS", 900),
    # A burst of publications within this many seconds gives one trigger.
    "TRIGGER_DEBOUNCE_SECONDS": env_int("DMSUPDATE_TRIGGER_DEBOUNCE_SECONDS", 5),
    # Registry backups: their own root, never a dataset's (agents and publishers read those).
    "BACKUP_ROOT": os.environ.get("DMSUPDATE_BACKUP_ROOT") or f"file://{(VAR_DIR / 'backups').resolve()}",
    # Seals the secrets in backups and signs them; kept outside the database and the bucket
    # (default: derived from DMSUPDATE_SECRET_KEY, so a restore needs the same secret key).
    "BACKUP_KEY": os.environ.get("DMSUPDATE_BACKUP_KEY", ""),
    "BACKUP_ENDPOINT": os.environ.get("DMSUPDATE_BACKUP_ENDPOINT", ""),
    # Dashboard login: failed attempts allowed per address and per username, and for how long.
    "LOGIN_FAILURE_LIMIT": env_int("DMSUPDATE_LOGIN_FAILURE_LIMIT", 10),
    "LOGIN_LOCKOUT_SECONDS": env_int("DMSUPDATE_LOGIN_LOCKOUT_SECONDS", 900),
    # GET /api/v1/datasets/{name}/head/: requests answered at once per process; beyond it 429 with this Retry-After.
    "HEAD_MAX_IN_FLIGHT": env_int("DMSUPDATE_HEAD_MAX_IN_FLIGHT", 16),
    "HEAD_RETRY_AFTER_SECONDS": env_int("DMSUPDATE_HEAD_RETRY_AFTER_SECONDS", 30),
    # Webhook deliveries: attempts before giving up, and the first retry's delay (doubling each time).
    "WEBHOOK_MAX_ATTEMPTS": env_int("DMSUPDATE_WEBHOOK_MAX_ATTEMPTS", 5),
    "WEBHOOK_RETRY_SECONDS": env_int("DMSUPDATE_WEBHOOK_RETRY_SECONDS", 30),
    # Bearer token required by /metrics when set.
    "METRICS_TOKEN": os.environ.get("DMSUPDATE_METRICS_TOKEN", ""),
}
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "audit.middleware.RequestIdFilter"}},
    "formatters": {
        "structured": {
            "format": "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s %(message)s",
        }
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "structured",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("DMSUPDATE_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
