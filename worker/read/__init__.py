"""The read path: one round trip to the store, judged on the store's clock, rendered for
the surfaces. Never imports Celery, kombu or FastAPI, nor the write path."""
