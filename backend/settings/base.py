"""Settings shared by every deployment, read from the environment.

DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY, DEBUG, ALLOWED_HOSTS and STORAGE_ROOT are the knobs;
`embedded` and `production` choose the defaults around them.
"""

import hashlib
import json
from datetime import timedelta
from pathlib import Path

from kombu import Queue

from backend.settings.env import database_from_url, env_bool, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent

SECRET_KEY = env_str("SECRET_KEY")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

STORAGE_ROOT = Path(env_str("STORAGE_ROOT", str(BASE_DIR / "var")))
EXPORTS_ROOT = STORAGE_ROOT / "exports"
CHECKPOINTS_ROOT = STORAGE_ROOT / "checkpoints"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "backend.accounts",
    "backend.audit",
    "backend.checkpoints",
    "backend.batches",
    "sampler",
    "annotator",
    "exports",
    "loop",
    "insights",
    "config",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "backend.accounts.login_throttle.LoginRateLimitMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {
    "default": database_from_url(env_str("DATABASE_URL", f"sqlite:///{STORAGE_ROOT / 'db.sqlite3'}"), base_dir=BASE_DIR)
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# gunicorn serves static files itself through WhiteNoise: no CDN, no extra proxy needed.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Shared by every gunicorn worker (the sign-in throttle counts in it): Redis when Redis is configured
# (CACHE_URL, else CELERY_BROKER_URL), local memory otherwise; embedded mode always uses local memory.
CACHE_URL = env_str("CACHE_URL", env_str("CELERY_BROKER_URL"))
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL.startswith(("redis://", "rediss://"))
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# Sign-in throttle (backend/accounts/login_throttle.py): this many failures per username and address
# within the window, and that username gets 429 from that address until the window ends.
LOGIN_FAILURE_LIMIT = int(env_str("LOGIN_FAILURE_LIMIT", "5"))
LOGIN_FAILURE_WINDOW_SECONDS = int(env_str("LOGIN_FAILURE_WINDOW_SECONDS", "900"))
LOGIN_RATE_LIMITED_PATHS = {"/login/", "/admin/login/", "/api-auth/login/", "/api/v1/auth/token/"}

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

# Request bodies past this size are refused before a view sees them.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its WWW-Authenticate header makes an anonymous call a 401, not a 403.
        "backend.accounts.auth_cache.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "backend.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Preference annotation platform API",
    "DESCRIPTION": "Batches, comparisons, leases and annotations for the Llama 2 human-feedback protocol.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Served from the drf-spectacular-sidecar package: no CDN, the deployment may have no internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Choice sets that share a field name ("kind", "status") get names of their own in the schema.
    "ENUM_NAME_OVERRIDES": {
        "CheckpointKindEnum": "backend.checkpoints.models.CheckpointKind",
        "TrainingRunKindEnum": "backend.checkpoints.models.TrainingRun.Kind",
        "JobStatusEnum": "backend.jobs.JobStatus",  # exports, training runs and iterations
        "BatchStatusEnum": "backend.batches.models.Batch.Status",
        "AssignmentStatusEnum": "backend.batches.models.Assignment.Status",
        "LivePairStatusEnum": "backend.batches.models.LivePair.Status",
    },
}

# Salts the pseudonymous annotator ids in exports; keep it fixed so ids stay stable across exports.
EXPORT_ANNOTATOR_SALT = (
    env_str("EXPORT_ANNOTATOR_SALT", "") or hashlib.sha256(f"annotators:{SECRET_KEY}".encode()).hexdigest()
)

# How long an annotator holds a comparison before it returns to the pool.
ASSIGNMENT_LEASE_SECONDS = int(env_str("ASSIGNMENT_LEASE_SECONDS", "900"))

# Gold quality control: an annotator is flagged for review when their accuracy on gold comparisons falls
# below GOLD_FLAG_ACCURACY after at least GOLD_FLAG_MIN_ANSWERS gold answers (since their last review).
GOLD_FLAG_ACCURACY = float(env_str("GOLD_FLAG_ACCURACY", "0.7"))
GOLD_FLAG_MIN_ANSWERS = int(env_str("GOLD_FLAG_MIN_ANSWERS", "10"))

# How long a web process keeps token -> user and user -> roles (backend.accounts.auth_cache): a revoked token
# or a changed role takes effect in every process within this time (0: look them up on every request).
AUTH_CACHE_SECONDS = float(env_str("AUTH_CACHE_SECONDS", "5"))

# Which engine sampler workers generate with: "transformers" (CPU/GPU), "vllm" (GPU image) or "openai"
# (an OpenAI-compatible server); options are the engine class's keyword arguments, as JSON.
SAMPLER_ENGINE = env_str("SAMPLER_ENGINE", "transformers")
SAMPLER_ENGINE_OPTIONS = json.loads(env_str("SAMPLER_ENGINE_OPTIONS", "{}"))
# Prompts per pre-sampling task. Each task generates all of one checkpoint's responses before the next
# checkpoint's, so a batch of up to this many prompts loads each of its checkpoints once.
SAMPLER_CHUNK_PROMPTS = int(env_str("SAMPLER_CHUNK_PROMPTS", "256"))

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = None
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = (Queue("default"), Queue("sampler"), Queue("sampler_live"), Queue("training"))
CELERY_TASK_ROUTES = {
    # Live pairs have their own worker, whose model stays loaded: one never waits behind pre-sampling.
    "sampler.tasks.live_pair_sample": {"queue": "sampler_live"},
    "sampler.*": {"queue": "sampler"},
    "training.*": {"queue": "training"},
}
# Tasks are idempotent, so a task whose worker died is redelivered rather than lost.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# GPU workers take one long job at a time; docker-compose also passes --prefetch-multiplier=1.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 600
CELERY_TASK_TIME_LIMIT = 660
# How long a delivered, unacknowledged task waits before Redis hands it to another worker: longer than
# the longest task, or a slow task runs twice (harmless: tasks are idempotent, but wasted GPU time).
# The socket timeouts bound a publish to a Redis that does not answer (see backend.jobs).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(env_str("CELERY_VISIBILITY_TIMEOUT", str(6 * 3600))),
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "batches-sync-schedule": {
        "task": "backend.batches.tasks.batches_sync_schedule",
        "schedule": timedelta(minutes=1),
    },
    "gold-reviews-refresh": {
        "task": "backend.batches.tasks.gold_reviews_refresh",
        "schedule": timedelta(minutes=5),
    },
    "jobs-requeue-stale": {
        "task": "backend.job_sweep.jobs_requeue_stale",
        "schedule": timedelta(minutes=5),
    },
}
# Jobs still queued this long after they were created, and not held by the broker, are published again.
JOB_REQUEUE_GRACE_SECONDS = int(env_str("JOB_REQUEUE_GRACE_SECONDS", "300"))
CELERY_IMPORTS = ("config.job_sweep",)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
