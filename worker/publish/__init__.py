"""The write path: beat publishes the health task, a worker runs it and writes the store.

Never imports the read path (``worker.read``) nor a surface (``worker.cli``, ``worker.http``).
"""
