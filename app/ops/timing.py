"""Server-Timing: every HTTP response says how long the server worked on it
(`Server-Timing: app;dur=<ms>`, from the request's arrival in the app to the response start).
Browser devtools show it, and bench/ measures server latency with it. Costs one clock read."""

from __future__ import annotations

from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ServerTiming:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                millis = (perf_counter() - started) * 1000
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", b"app;dur=%.3f" % millis))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed_send)
