"""A fake OpenAI-compatible chat server for tests: 127.0.0.1, a free port, a thread.

Queue behaviours in ``script``; each request takes the next one (``"ok"`` once the queue
is empty): ``ok``, ``malformed_json``, ``malformed_content``, ``500``, ``429``, ``401``,
``slow`` (sleeps ``slow_seconds``, then answers ok). Every request is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GOOD_REPLY = "Concept: numbers\nTask: solving math problems\nLevel: semantics"


class FakeOpenAI:
    def __init__(self, reply: str = GOOD_REPLY, slow_seconds: float = 1.0) -> None:
        self.reply, self.slow_seconds = reply, slow_seconds
        self.script: list[str] = []
        self.requests: list[dict] = []  # {"path", "headers", "body", "time"}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def next_behaviour(self, request: dict) -> str:
        with self.lock:
            self.requests.append(request)
            return self.script.pop(0) if self.script else "ok"

    def completion(self, content: str) -> dict:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": "fake",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content},
                }
            ],
        }


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def send(self, code: int, payload: bytes, headers: dict | None = None) -> None:
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            behaviour = fake.next_behaviour(
                {
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": body,
                    "time": time.monotonic(),
                }
            )
            if self.path != "/v1/chat/completions":
                return self.send(404, b'{"error": {"message": "no such route"}}')
            if behaviour == "slow":
                time.sleep(fake.slow_seconds)
                behaviour = "ok"
            if behaviour == "ok":
                return self.send(200, json.dumps(fake.completion(fake.reply)).encode())
            if behaviour == "malformed_content":
                return self.send(200, json.dumps(fake.completion("I like turtles.")).encode())
            if behaviour == "malformed_json":
                return self.send(200, b'{"choices": [{"message": ')
            if behaviour in ("500", "429"):
                return self.send(int(behaviour), b'{"error": {"message": "try again"}}')
            if behaviour == "401":
                return self.send(401, b'{"error": {"message": "Incorrect API key provided"}}')
            raise ValueError(f"unknown behaviour {behaviour!r}")

    return Handler
