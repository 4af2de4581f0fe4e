"""A local stand-in for Google Drive's download flow, on 127.0.0.1 only, for tests.

``/uc?export=download&id=ID`` answers like Drive does for a large file: an HTML "can't scan
for viruses" page, either with a form (action ``/download``, hidden id/export/confirm/uuid) or,
in ``cookie`` mode, with a ``download_warning`` cookie whose value must come back as
``confirm=``. The file itself supports ``Range`` requests and can drop the connection half-way
through the first full transfer. Every request is recorded for the assertions.
"""

from __future__ import annotations

import socket
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FILE_ID = "TESTFILEID"
UUID = "0b1c2d3e-uuid"
TOKEN = "cookieToken42"
PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="{action}" method="get">
<input type="submit" id="uc-download-link" value="Download anyway"/>
<input type="hidden" name="id" value="{id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="{uuid}">
</form></body></html>"""
QUOTA_PAGE = "<html><head><title>Google Drive - Quota exceeded</title></head><body>Too many users</body></html>"


@dataclass
class DriveState:
    payload: bytes = b""
    mode: str = "form"  # form | cookie | quota
    drop_first: bool = False  # cut the first full transfer half-way
    honour_range: bool = True
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    dropped: int = 0


def _handler(state: DriveState):
    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # a stuck client cannot hold a server thread for long

        def log_message(self, *args):  # keep pytest output clean
            pass

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            state.requests.append((self.path, self.headers.get("Range")))
            if url.path == "/uc" and query.get("id") == FILE_ID:
                if state.mode == "quota":
                    return self._html(QUOTA_PAGE)
                if state.mode == "cookie":
                    if query.get("confirm") == TOKEN and TOKEN in (self.headers.get("Cookie") or ""):
                        return self._file()
                    return self._html("<html><title>Warning</title><body>large file</body></html>",
                                      cookie=f"download_warning_13058_{FILE_ID}={TOKEN}; Path=/")
                host, port = self.server.server_address[:2]
                return self._html(PAGE.format(action=f"http://{host}:{port}/download", id=FILE_ID, uuid=UUID))
            if url.path == "/download" and query.get("uuid") == UUID and query.get("confirm") == "t":
                return self._file()
            self.send_error(404)

        def _html(self, text: str, cookie: str | None = None):
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            if cookie:
                self.send_header("Set-Cookie", cookie)
            self.end_headers()
            self.wfile.write(body)

        def _file(self):
            data, start = state.payload, 0
            wanted = self.headers.get("Range")
            if wanted and state.honour_range:
                start = int(wanted.removeprefix("bytes=").split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Disposition", 'attachment; filename="MobileFaceSwap.zip"')
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if state.drop_first and not state.dropped and start == 0:
                state.dropped += 1
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(data[start:])

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that hangs up early (size limit, timeout tests) is expected here


class FakeDrive:
    """The server, started on a free port of 127.0.0.1 and stopped by :meth:`stop`."""

    def __init__(self, state: DriveState):
        self.state = state
        self.server = _Server(("127.0.0.1", 0), _handler(state))
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/uc?export=download&id={FILE_ID}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers: a stalled network, for timeouts."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]

    def stop(self) -> None:
        self.sock.close()
