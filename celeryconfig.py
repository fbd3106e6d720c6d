"""Celery configuration of the heartbeat worker and beat, built from the environment.

Every value the heartbeat itself needs comes from ``worker.core.settings.Settings`` (read and
validated once); a bad variable stops the program with one line before Celery starts.

Every public name of this module is a Celery setting, and Celery sends them all to anyone
with the broker login (``celery inspect conf``, ``inspect report``), masking only its own
keys: the settings object and the helpers are kept under names starting with ``_``, which
Celery leaves out. ``worker/celery.py`` hands ``_heartbeat_settings`` to ``install_heartbeat``.
"""

from typing import Any as _Any

from worker.core.settings import load_or_exit as _load_or_exit
from worker.core.settings import tls_options_or_exit as _tls_options_or_exit
from worker.core.urls import kombu_sentinel as _kombu_sentinel

_heartbeat_settings = _load_or_exit()
_interval_s = _heartbeat_settings.interval_s

broker_url = _heartbeat_settings.broker_url
#: Keep retrying while the broker is down at startup, explicitly (Celery 6 changes the default).
broker_connection_retry_on_startup = True
broker_connection_retry = True
broker_connection_max_retries = None
#: Socket timeouts and keepalive, so a dropped or half-open connection can't block forever;
#: the health check PINGs a pooled connection idle longer than 10 s before using it.
broker_transport_options: dict[str, _Any] = {
    "socket_timeout": 5.0,
    "socket_connect_timeout": 5.0,
    "socket_keepalive": True,
    "retry_on_timeout": True,
    "health_check_interval": 10,
    "visibility_timeout": 3600,
}
broker_heartbeat = 10  # AMQP only: detect a dead RabbitMQ connection
if broker_url.startswith("sentinel://"):
    #: One ``sentinel://h1:p1,h2:p2/0?master=NAME`` format for broker and store; kombu's own
    #: is ``sentinel://h1:p1/0;sentinel://h2:p2/0`` plus ``master_name``.
    # Celery lets the CELERY_BROKER_URL variable override ``broker_url``, but not the
    # read/write URLs, which every connection of beat and the worker uses.
    broker_url, broker_transport_options["master_name"] = _kombu_sentinel(broker_url)
    broker_read_url = broker_write_url = broker_url
if broker_url.startswith("rediss://"):
    #: kombu would not verify a rediss:// broker's certificate by itself.
    broker_use_ssl = _tls_options_or_exit(broker_url)

#: JSON only: a pickled message is refused (ContentDisallowed), never executed.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
event_serializer = "json"

#: A heartbeat has no result to keep.
result_backend = None
task_ignore_result = True
task_store_errors_even_if_ignored = False

#: The heartbeat's route, queue and schedule entries are added by ``install_heartbeat``
#: (``worker/celery.py``), the same call that installs it into another app.
task_default_queue = _heartbeat_settings.queue
timezone = "UTC"
enable_utc = True

#: One heartbeat at a time per worker, and no prefetching of heartbeats that will expire.
worker_concurrency = 1
worker_prefetch_multiplier = 1
#: Celery 6's default, explicit (Celery 5 warns at every lost connection without it): a
#: late-acknowledged task running when the broker connection is lost is cancelled, since
#: its message goes back to the queue. The heartbeat's own tasks are acknowledged early.
worker_cancel_long_running_tasks_on_connection_loss = True
worker_send_task_events = False
worker_hijack_root_logger = True

#: Beat keeps its schedule in memory (no schedule file to corrupt in the working
#: directory) and sends the first heartbeat at once.
beat_scheduler = "worker.publish.scheduler:HeartbeatScheduler"
beat_max_loop_interval = max(min(_interval_s, 5.0), 0.25)
