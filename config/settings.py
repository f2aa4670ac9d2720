"""Settings, every value read from the environment with a working default.

`DJANGO_ENV=production` switches on the deployment hardening (and then requires a strong
`SECRET_KEY` and `ALLOWED_HOSTS`, and refuses DEBUG); `development`, the default, works on a fresh
machine with no configuration at all. Any other value is refused.
"""

from __future__ import annotations

import getpass
import math
import warnings
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DJANGO_ENV = env.str("DJANGO_ENV", default="development")
# A typo ("prod", "staging") must not quietly run with the development key and no hardening.
if DJANGO_ENV not in ("development", "production"):
    raise ImproperlyConfigured(
        f"DJANGO_ENV is {DJANGO_ENV!r}; it must be 'development' or 'production'"
    )
PRODUCTION = DJANGO_ENV == "production"
DEVELOPMENT_SECRET_KEY = "dev-insecure-order-engine-key-change-me"

if PRODUCTION:
    # No default outside development: fail loudly, saying what to do.
    SECRET_KEY = env.str("SECRET_KEY", default="")
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DJANGO_ENV=production: set it to 50 or more random "
            "characters, e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    if SECRET_KEY == DEVELOPMENT_SECRET_KEY or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured(
            "SECRET_KEY is too weak for production: use 50 or more random characters, not the "
            "development key"
        )
else:
    SECRET_KEY = env.str("SECRET_KEY", default=DEVELOPMENT_SECRET_KEY)

DEBUG = env.bool("DJANGO_DEBUG", default=False)  # off unless asked for, in every environment
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG must be off when DJANGO_ENV=production")
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=[] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS is required when DJANGO_ENV=production: the host names this API is served "
        "as, comma-separated (e.g. orders.example.com)"
    )
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Host patterns (as in ALLOWED_HOSTS) whose pages may open WebSockets; default ALLOWED_HOSTS.
WEBSOCKET_ALLOWED_ORIGINS = env.list("WEBSOCKET_ALLOWED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "dex",
    "engine",
    "orders",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # daphne serves no static files itself
    "orders.middleware.RequestGuardMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

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
        },
    },
]

# Threads that run HTTP requests under daphne, each request start to finish on one of them
# (config/handler.py says why).
HTTP_THREADS = env.int("HTTP_THREADS", default=4)
# How long a thread of daphne may hold the interpreter lock while another waits for it
# (sys.setswitchinterval; Python's default is 5 ms). The event loop thread that delivers updates
# and reads requests waits for it whenever an HTTP thread is running a view. 1 ms took 1.1-2.2 ms
# off the WebSocket delivery p99 at 100 orders/s in three pairs, for no more CPU (README,
# Performance).
_switch_interval = env.str("WEB_SWITCH_INTERVAL_MS", default="1")
try:
    WEB_SWITCH_INTERVAL_MS = float(_switch_interval)
except ValueError:
    WEB_SWITCH_INTERVAL_MS = math.nan  # refused just below, with the value as given
if not 0.01 <= WEB_SWITCH_INTERVAL_MS <= 1000:
    raise ImproperlyConfigured(
        f"WEB_SWITCH_INTERVAL_MS is {_switch_interval!r}; it must be a number of milliseconds "
        "from 0.01 to 1000 (Python's own default is 5)"
    )
# daphne and each pool process open their connections, load the token registry and the market
# and start their threads before the first request or task instead of during it (config.warmup).
WARMUP = env.bool("WARMUP", default=True)

# --- PostgreSQL (psycopg 3) -------------------------------------------------------------------
DATABASES = {
    "default": env.db_url(
        "DATABASE_URL", default=f"postgres://{getpass.getuser()}@localhost:5432/orderengine"
    )
}
# Django's PostgreSQL backend, its JSON columns encoded by orjson (config/db/base.py says how).
DATABASES["default"]["ENGINE"] = "config.db"
DATABASES["default"].setdefault("OPTIONS", {})
# Fail fast when PostgreSQL is down: the API answers 503 instead of hanging. A new connection
# gives up after DB_CONNECT_TIMEOUT; a request waiting for a pooled one (PostgreSQL down, the
# pool reconnecting) after DB_POOL_TIMEOUT, by default the same.
_connect_timeout = env.int("DB_CONNECT_TIMEOUT", default=3)
# The web process runs every request in a thread of its own (ASGI), so persistent connections
# would pile up one per thread: it uses psycopg's pool instead (DB_POOL=1 in the Procfile).
# A Celery prefork child runs one order at a time on one long-lived connection.
if env.bool("DB_POOL", default=False):
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": env.int("DB_POOL_MIN_SIZE", default=2),
        "max_size": env.int("DB_POOL_MAX_SIZE", default=16),
        "timeout": env.float("DB_POOL_TIMEOUT", default=_connect_timeout),
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Parameters bound by the server, and a statement the connection has run twice prepared and
# kept (psycopg's `prepare_threshold`): PostgreSQL then plans each of the engine's few hot
# statements once per connection instead of once per execution. Behind a pooler that cannot
# keep prepared statements (PgBouncer in transaction mode before 1.21), set
# DB_PREPARE_THRESHOLD to -1.
_prepare_threshold = env.int("DB_PREPARE_THRESHOLD", default=2)
DATABASES["default"]["OPTIONS"].setdefault("server_side_binding", True)
DATABASES["default"]["OPTIONS"].setdefault(
    "prepare_threshold", None if _prepare_threshold < 0 else _prepare_threshold
)
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", _connect_timeout)
DATABASES["default"]["TEST"] = {
    "NAME": env.str("TEST_DATABASE_NAME", default=f"test_{DATABASES['default']['NAME']}")
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, channel layer, Celery broker -----------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://localhost:6379/0")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "oe",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}

# channels_redis's pub/sub layer with the engine's additions (engine/events.py says why): a group
# message is one PUBLISH and each process holds one subscription per group, so delivery does not
# queue behind a per-process backlog as the core layer's does (that layer dropped 20-40 % of live
# updates at 100 orders/s with 1 000 sockets, leaving replay to hide it). The layer appends the
# Redis database number to the prefix: pub/sub channels are server-wide.
# No socket timeout: any timeout makes redis-py wrap each write in asyncio.wait_for, which on
# Python 3.11 swallows a cancellation that lands as the write completes, so a consumer could
# outlive its socket (the tests/ws hang that had 0c5d755's 15 s timeout backed out in 34a0f16).
# Nothing here waits on a Redis read without a bound of its own.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "engine.events.PubSubChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": None, "socket_connect_timeout": 2}],
            "prefix": "oe:ws",
        },
    }
}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# At most ORDER_CONCURRENCY orders execute at once per worker, on WORKER_PROCESSES pool
# processes (the same number unless set): each process executes ORDER_CONCURRENCY //
# WORKER_PROCESSES orders together (engine.lockstep), one when they are equal.
ORDER_CONCURRENCY = env.int("ORDER_CONCURRENCY", default=10)
# The worker's pool size: the worker command gives no --concurrency, so this is the one place.
CELERY_WORKER_CONCURRENCY = int(env.str("WORKER_PROCESSES", default="") or ORDER_CONCURRENCY)
# The worker's CPU priority below the web process's (config/celery.py says why); 0 keeps it equal.
WORKER_NICE = env.int("WORKER_NICE", default=10)
# Fresh orders dispatched within this long of the previous dispatch wait for it to pass and go
# out together, one broker message for several (engine.tasks.order_dispatch). Worth it when a pool
# process executes several orders together; one order at a time (the default) gains nothing.
# 60 ms: at 100 orders/s a message then carries about six orders instead of two, and an order
# costs about a quarter less CPU (README, Performance); it waits about 30 ms longer to start.
DISPATCH_LINGER_MS = float(
    env.str("DISPATCH_LINGER_MS", default="")
    or (60.0 if ORDER_CONCURRENCY > CELERY_WORKER_CONCURRENCY else 0.0)
)
CELERY_TASK_DEFAULT_QUEUE = "orders"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_WORKER_SEND_TASK_EVENTS = True  # Flower sees tasks live
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # the worker logs in the same format as the web
CELERY_TASK_SEND_SENT_EVENT = False  # one broker round trip less per dispatch
CELERY_TIMEZONE = "UTC"
# Periodic work has its own queue, so the 1 s watcher never waits behind a backlog of orders.
CELERY_TASK_ROUTES = {
    "engine.watch_orders": {"queue": "periodic"},
    "engine.reconcile_orders": {"queue": "periodic"},
    "dex.tasks.market_drift_task": {"queue": "periodic"},
}
CELERY_BEAT_SCHEDULE = {
    "watch-waiting-orders": {"task": "engine.watch_orders", "schedule": 1.0},
    # How often beat looks for stalled orders (ORDER_STALE_SECONDS says how stale).
    "reconcile-orders": {
        "task": "engine.reconcile_orders",
        "schedule": env.float("ORDER_RECONCILE_SECONDS", default=10.0),
    },
    "market-drift": {"task": "dex.tasks.market_drift_task", "schedule": 2.0},
}
CELERY_BEAT_SCHEDULE_FILENAME = env.str(
    "CELERY_BEAT_SCHEDULE_FILENAME", default=str(BASE_DIR / ".celerybeat-schedule")
)

# --- The engine --------------------------------------------------------------------------------
ORDER_RATE_LIMIT = env.str("ORDER_RATE_LIMIT", default="100/m")
ORDER_MAX_ATTEMPTS = env.int("ORDER_MAX_ATTEMPTS", default=3)
ORDER_RETRY_BACKOFF_SECONDS = env.float("ORDER_RETRY_BACKOFF_SECONDS", default=1.0)
ORDER_RETRY_BACKOFF_MAX_SECONDS = env.float("ORDER_RETRY_BACKOFF_MAX_SECONDS", default=30.0)
ORDER_CACHE_TTL_SECONDS = env.int("ORDER_CACHE_TTL_SECONDS", default=3600)
ORDER_STALE_SECONDS = env.float("ORDER_STALE_SECONDS", default=30.0)  # the reconciler's threshold
ORDER_LIMIT_DEFAULT_TTL_HOURS = env.int("ORDER_LIMIT_DEFAULT_TTL_HOURS", default=24)
ORDER_MAX_AMOUNT = env.str("ORDER_MAX_AMOUNT", default="1000000000")  # in whole tokens
API_RATE_LIMIT = env.str("API_RATE_LIMIT", default="100/m")
# Rate limits key on the client's address. Behind a reverse proxy that address is the proxy's,
# unless API_TRUST_PROXY is set: then the entry API_PROXY_HOPS from the right of
# X-Forwarded-For (the one our own proxies appended, which a client cannot forge) is used.
API_TRUST_PROXY = env.bool("API_TRUST_PROXY", default=False)
API_PROXY_HOPS = env.int("API_PROXY_HOPS", default=1)
MAX_REQUEST_BYTES = 16 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BYTES

# --- The simulated venues ----------------------------------------------------------------------
DEX_QUOTE_LATENCY_MS = env.float("DEX_QUOTE_LATENCY_MS", default=200)
DEX_EXECUTION_LATENCY_MS = env.str("DEX_EXECUTION_LATENCY_MS", default="2000-3000")
DEX_FAILURE_RATE = env.float("DEX_FAILURE_RATE", default=0.05)
DEX_SEED = env.int("DEX_SEED", default=None)

# --- DRF and the schema ------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["orders.parsers.ExactJSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "orders.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Order execution engine",
    "DESCRIPTION": "Market, limit and sniper orders routed to the best Solana venue.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # The browsable docs are served by the project itself: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {"OrderStatusEnum": "orders.models.OrderStatus.values"},
}

RATELIMIT_VIEW = "orders.errors.ratelimited_view"
RATELIMIT_USE_CACHE = "default"

# --- Static files, i18n ------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Served by WhiteNoise with DEBUG on or off; from the finders unless `collectstatic` has run.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)
# Until `collectstatic` has run there is no STATIC_ROOT; the finders serve, nothing to warn about.
warnings.filterwarnings("ignore", message=r"No directory at: .*staticfiles")
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- Production hardening (python manage.py check --deploy) -----------------------------------
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

# --- Logs: one line per event, key=value, readable by people and by grep ----------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"format": "%(asctime)s %(levelname)s %(processName)s %(name)s %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "line"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "config": {"level": LOG_LEVEL},
        "engine": {"level": LOG_LEVEL},
        "dex": {"level": LOG_LEVEL},
        "orders": {"level": LOG_LEVEL},
    },
}
