"""A local webhook receiver: answers from a script (a status, or "hang") and records posts."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """An HTTP server on a free loopback port. ``answers`` are used in turn (then 200);
    ``"hang"`` holds the request open for ``hang_s`` and answers nothing."""

    def __init__(self, *answers: int | str, hang_s: float = 30.0) -> None:
        self.answers = list(answers)
        self.hang_s = hang_s
        self.posts: list[dict[str, Any]] = []  #: every request: answer, body, monotonic time
        self.lock = threading.Lock()
        self.closing = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"null")
                with receiver.lock:
                    answer = receiver.answers.pop(0) if receiver.answers else 200
                    receiver.posts.append({"answer": answer, "body": body, "path": self.path,
                                           "at": time.monotonic(),
                                           "authorization": self.headers.get("Authorization")})
                if answer == "hang":
                    receiver.closing.wait(receiver.hang_s)
                    return
                self.send_response(int(answer))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook/SECRET-TOKEN"

    def url_with(self, userinfo: str) -> str:
        """The URL with ``user:password@`` in it."""
        return self.url.replace("http://", f"http://{userinfo}@")

    def delivered(self) -> list[dict[str, Any]]:
        """The bodies answered 2xx, in the order they came."""
        with self.lock:
            return [p["body"] for p in self.posts if p["answer"] != "hang"
                    and 200 <= int(p["answer"]) < 300]

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
