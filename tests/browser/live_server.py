"""A static site on a second loopback origin, for bare pages (the server itself: tests/served.py)."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator

from tests.support.servers import SUBPROCESS_PORTS, free_port_in


@contextlib.contextmanager
def static_site(pages: dict[str, str]) -> Iterator[int]:
    """Serves `pages` (path -> HTML) from 127.0.0.1 on a free port; yields the port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path.split("?")[0])
            if body is None:
                self.send_error(404)
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port_in(SUBPROCESS_PORTS)), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
