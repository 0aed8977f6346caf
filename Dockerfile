# One image for web, worker and beat; docker-compose.yml picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY settings.py alembic.ini ./
COPY campaigns ./campaigns
COPY workers ./workers
COPY web ./web
COPY templates ./templates
COPY migrations ./migrations
# The campaign files seed a new database; after that, what runs is the revisions published
# there (drip campaigns push, the workspace editor): changing a sequence needs no rebuild.
RUN pip install --no-cache-dir -e . && useradd --create-home drip && mkdir -p /app/var && chown drip /app/var
# No image ships copy that fails lint or that no clinician has reviewed as it stands.
RUN drip campaigns lint --strict --quiet
USER drip
EXPOSE 8000
CMD ["drip", "web", "--host", "0.0.0.0"]
