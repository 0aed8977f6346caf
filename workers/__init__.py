"""The running side: the Celery app, its thin tasks, the providers and the CLI."""
