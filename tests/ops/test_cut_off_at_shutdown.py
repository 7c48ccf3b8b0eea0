"""A request still running when the graceful shutdown ends (SYNCSTATUS_SHUTDOWN_TIMEOUT) is cut
off with a 503 and Retry-After, which a client or proxy retries elsewhere, and one warning in
the log: not uvicorn's 500 and "Exception in ASGI application" traceback, as if it were a bug."""

from __future__ import annotations

import json
import signal
import socket

import httpx

from tests.server import run_server, sqlite_database


def _read_all(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_a_request_outliving_the_shutdown_gets_503_and_no_traceback() -> None:
    env = {"SYNCSTATUS_SHUTDOWN_TIMEOUT": "1", "SYNCSTATUS_LOG_LEVEL": "info"}
    with sqlite_database() as url, run_server(url, env=env) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            # A body announced and never finished: the request waits for it until cut off.
            sock.sendall(
                b"POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"query":'
            )
            # Another request answered after it: the server has read the first one's head.
            assert httpx.get(f"{server.url}/livez", timeout=30).status_code == 200
            server.process.send_signal(signal.SIGTERM)
            head, _, body = _read_all(sock).partition(b"\r\n\r\n")
        server.process.wait(30)
        log = server.log()
    status_line, *header_lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    assert status_line == "HTTP/1.1 503 Service Unavailable", head
    assert headers["retry-after"] == "2" and headers["connection"] == "close", headers
    assert json.loads(body)["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE", body
    assert "Exception in ASGI application" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert "request cut off: the server stopped before it finished" in log, log[-3000:]
    assert "status=503" in log and "outcome=SERVICE_UNAVAILABLE" in log, log[-3000:]
