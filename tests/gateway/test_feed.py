"""`make run`'s sample feed: a failed request is counted and reported, and the feed goes on."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from devtools.processes import free_port
from devtools.up import feed, summary


class FlakyGateway:
    """Answers like ner-processor, except: every 5th request's connection is reset (abort, no answer),
    every 7th gets an HTML 502 page, every 11th a 503 JSON error, every 13th a truncated JSON body."""

    def __init__(self):
        self.port = free_port()
        self.count = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.count += 1
        n = self.count
        if n % 5 == 0:
            request.transport.abort()  # RST: the client sees ConnectionResetError / RemoteDisconnected
            return web.Response(status=500)
        if n % 7 == 0:
            return web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html")
        if n % 11 == 0:
            return web.json_response({"error": "database_unavailable", "message": "down"}, status=503)
        if n % 13 == 0:
            return web.Response(body=b'{"persisted": tr', content_type="application/json")
        return web.json_response({"request_id": body["request_id"], "entities": [], "persisted": True,
                                  "duplicate": False, "commit_lsn": f"0/{n:X}"})

    async def _main(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        await asyncio.Event().wait()

    def start(self) -> FlakyGateway:
        self._thread.start()
        self._ready.wait(10)
        return self


def test_feed_counts_resets_html_and_error_answers_and_goes_on():
    flaky = FlakyGateway().start()
    comments = [{"id": f"c{i}", "text": f"comment {i}"} for i in range(100)]
    ok, failures, highest = feed(f"http://127.0.0.1:{flaky.port}", comments, concurrency=1, timeout=10)
    # sequential, so request n is comment n-1: count the expected failures the same way
    failed = [n for n in range(1, 101) if n % 5 == 0 or n % 7 == 0 or n % 11 == 0 or n % 13 == 0]
    assert ok == 100 - len(failed) and len(failures) == len(failed)
    assert flaky.count == 100  # every comment was sent: nothing stopped the feed
    text = "\n".join(failures)
    assert "HTTP 502" in text and "HTTP 503 database_unavailable" in text
    assert any(kind in text for kind in ("ConnectionResetError", "RemoteDisconnected"))
    assert "JSONDecodeError" in text
    assert highest == f"0/{max(set(range(1, 101)) - set(failed)):X}"  # the highest LSN among the persisted


def test_feed_against_a_gateway_that_is_gone_reports_every_comment():
    comments = [{"id": f"g{i}", "text": "x"} for i in range(5)]
    ok, failures, highest = feed(f"http://127.0.0.1:{free_port()}", comments, timeout=2)
    assert (ok, highest) == (0, None) and len(failures) == 5
    assert all("ConnectionRefusedError" in f for f in failures)


def test_summary_describes_an_unreachable_entity_stats_instead_of_raising():
    assert "could not be read" in summary(f"http://127.0.0.1:{free_port()}", "no-token")
