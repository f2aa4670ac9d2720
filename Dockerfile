# The engine's one image: web (daphne), worker, beat and flower all run from it (docker-compose.yml).
FROM python:3.11-slim

# uv from its official image, pinned: the same resolver that wrote uv.lock.
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /uvx /usr/local/bin/

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PATH="/app/.venv/bin:$PATH"

WORKDIR /app

# Dependencies first (cached while only the code changes), exactly as locked; no dev tools.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

COPY . .
RUN uv sync --frozen --no-dev \
    && python manage.py collectstatic --noinput \
    && useradd --system --create-home --home-dir /home/app app \
    && chown -R app:app /app

USER app
EXPOSE 8000 5555
# docker-compose.yml gives each service its own command; alone, the image serves the web face.
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "config.asgi:application"]
