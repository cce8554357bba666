"""entity-stats: top entities, label mix and data freshness, served from the analytics read replica.

``GET ?window=1h&label=ORG&limit=20&consistency=eventual|strong&min_lsn=X/Y``

python3-http contract: ``handle(event, context)`` returns ``{"statusCode", "body", "headers"}``. The
service (two connection pools: replica and primary, role nlp_analyst) is created once per container
when this module is imported; its pools connect in the background, so the import never waits for a
database. Readiness ("replica reachable, or primary reachable when fallback is allowed") is registered
with the runtime's readiness registry.
"""

from functions.runtime import lifecycle, readiness, request_log
from functions.runtime.analytics import AnalyticsService, parse_query_params
from functions.runtime.errors import MethodNotAllowed
from functions.runtime.http import handles_errors, header_request_id, json_response, new_request_id
from functions.runtime.settings import Settings

service = AnalyticsService(Settings.from_env()).open()
readiness.register("database", service.ready)
lifecycle.on_shutdown(service.close)


@handles_errors
def handle(event, context):
    if (event.method or "GET").upper() != "GET":
        raise MethodNotAllowed(f"entity-stats answers GET only, not {event.method}", allow="GET")
    params = parse_query_params(event.query)
    window_text = params.pop("window_text")
    request_id = header_request_id(event) or new_request_id()
    request_log.fields()["request_id"] = request_id
    body = service.query(**params)
    body["window"] = window_text  # echo the caller's spelling ("24h" stays "24h")
    return json_response(200, body, request_id=request_id, headers={
        "Cache-Control": "no-store",
        "X-Served-By": body["served_by"],
    })
