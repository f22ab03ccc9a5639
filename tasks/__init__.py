"""Celery tasks: thin wrappers that load arguments, call one `app/` function and report."""
