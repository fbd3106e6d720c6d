"""The least Django settings django-celery-beat needs: its models in a SQLite file
(``ENTRIES_DJANGO_DB``), aware times in UTC."""

import os

SECRET_KEY = "sample-app-only"  # a sample app's, never deployed
INSTALLED_APPS = ["django_celery_beat"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["ENTRIES_DJANGO_DB"],
        "OPTIONS": {"timeout": 30},  # beat, the worker and the test write the same file
    },
}
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
