"""HTTP surfaces: ``GET /system/health``, ``/metrics`` and the dashboard.

``from worker.http import router`` mounts them into a FastAPI app.
"""

from worker.http.router import configure, create_app, router

__all__ = ["configure", "create_app", "router"]
