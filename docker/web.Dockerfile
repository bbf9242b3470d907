# Web app, the default-queue Celery worker and celery beat (CPU only).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so that code changes do not reinstall them.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY . .

# collectstatic imports the production settings, which require a SECRET_KEY
# (32+ characters, no "secret"/"insecure"/"change-me" in it) and parse
# DATABASE_URL, though nothing connects. These placeholders exist for this one
# step only and never reach the running container's environment.
ARG BUILD_SECRET_KEY=collectstatic-build-placeholder-0123456789abcdefghij
RUN SECRET_KEY="$BUILD_SECRET_KEY" \
    DATABASE_URL=postgres://build:build@localhost:5432/build \
    DJANGO_SETTINGS_MODULE=backend.settings.production \
    python manage.py collectstatic --noinput

# Non-root. uid 1000 owns /data so fresh named volumes mounted there
# (exports, checkpoints) start out writable by the app.
RUN useradd --create-home --uid 1000 app \
    && mkdir -p /data/exports /data/checkpoints \
    && chown -R app:app /data
USER app

EXPOSE 8000
