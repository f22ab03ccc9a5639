"""Process entry points (listener, Celery app). Thin: all logic lives in `app/`."""
