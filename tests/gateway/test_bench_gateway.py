"""bench/gateway.py's pieces on fakes: the closed loop reaches the function path through the gateway,
the load client counts non-JSON answers and connection errors, the report renders the comparison."""

from __future__ import annotations

import asyncio
import json
import threading

from aiohttp import web

from bench import gateway as bench_gateway
from devtools.processes import free_port


def test_closed_loop_through_the_gateway_hits_the_function_path(fake_gateway, echo, tmp_path):
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(["Tim Cook visited Berlin.", "short"]))
    result = bench_gateway.closed_loop({
        "url": fake_gateway.url, "path": "/function/ner-processor", "texts_path": str(texts), "clients": 4,
        "warmup_s": 0.1, "duration_s": 0.5, "id_prefix": "t", "timeout_s": 5})
    assert result["requests"] > 0 and result["statuses"] == {"200": result["requests"]} and not result["errors"]


def test_load_client_counts_html_answers_and_resets():
    port = free_port()
    ready = threading.Event()
    hits = {"n": 0}

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        hits["n"] += 1
        if hits["n"] % 3 == 0:
            return web.Response(status=502, text="<html>bad</html>", content_type="text/html")
        if hits["n"] % 5 == 0:
            request.transport.abort()
            return web.Response(status=500)
        return web.json_response({"ok": True})

    async def serve():
        app = web.Application()
        app.router.add_route("*", "/{t:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.sleep(30)

    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
    ready.wait(10)
    result = asyncio.run(bench_gateway.load({"url": f"http://127.0.0.1:{port}", "path": "/", "texts": ["a", "b"],
                                             "clients": 2, "duration_s": 1.0, "timeout_s": 5}))
    assert result["non_json"] > 0 and "502" in result["statuses"] and result["non_json_samples"]
    assert sum(result["errors"].values()) > 0  # the aborted connections


def test_report_renders_ratio_cpu_and_verdict():
    results = {"gateway": {"rounds": 2, "duration_s": 12.0, "levels": {
        "16": {"direct_docs_s": 200.0, "gateway_docs_s": 190.0, "ratio": 0.95, "ratios": [0.94, 0.96],
               "gateway_cpu_ms": [0.4, 0.5], "function_cpu_ms": [5.0, 5.0]},
        "64": {"direct_docs_s": 200.0, "gateway_docs_s": 150.0, "ratio": 0.75, "ratios": [0.7, 0.8],
               "gateway_cpu_ms": [], "function_cpu_ms": []}}}}
    text = bench_gateway.render(results)
    assert "| 16 | 200.0 docs/s | 190.0 docs/s | 0.95× (0.94, 0.96) | 0.45 / 5.00 ms (9%) | **met**" in text
    assert "| 64 |" in text and "**NOT met**" in text
    assert bench_gateway.render({}) == ""
