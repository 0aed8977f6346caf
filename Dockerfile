# One image for every app service (web, worker, beat, flower, migrate); docker-compose.yml
# builds it once and picks the command.

# ---- builder: the locked dependencies, then the project, into a virtual environment.
FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# Dependencies before the source, so a code change reuses this layer. Every file is
# checked against the hashes in the lock (make lock), and nothing unlisted comes in.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md settings.py alembic.ini ./
COPY campaigns ./campaigns
COPY workers ./workers
COPY web ./web
COPY templates ./templates
COPY migrations ./migrations
# The project itself, not editable and without build isolation: its build backend
# (setuptools) is in the lock too, so nothing is fetched unpinned.
RUN pip install --no-deps --no-build-isolation . && pip check && rm -rf build ./*.egg-info

# ---- the image: the environment and the source tree, run as an unprivileged user.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app
# The code reads its templates, campaign files, migrations and legal texts beside its
# modules (settings.ROOT, campaigns/migrate.py), so it runs from /app (PYTHONPATH); the
# installed copy supplies the `drip` command and the package metadata.
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
WORKDIR /app
# No image ships copy that fails lint or that no clinician has reviewed as it stands.
# Then the user the app runs as, owning only var/ (whatever the lint left there too).
RUN drip campaigns lint --strict --quiet \
    && useradd --create-home --uid 10001 --user-group drip \
    && mkdir -p /app/var && chown -R drip:drip /app/var
# drip, by number: a runtime can tell it is not root without reading /etc/passwd.
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=10s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=5)"]
CMD ["drip", "web", "--host", "0.0.0.0"]
