"""entity-stats: top entities, label mix and data freshness, served from the analytics read replica.

``GET ?window=1h&label=ORG&limit=20&consistency=eventual|strong&min_lsn=X/Y``

python3-http contract: ``handle(event, context)`` returns ``{"statusCode", "body", "headers"}``. The
service (two connection pools: replica and primary, role nlp_analyst) is created once per container
when this module is imported; its pools connect in the background, so the import never waits for a
database.
"""

from functions.runtime import app
from functions.runtime.analytics import build
from functions.runtime.http import handles_errors

service = app.create(build)


@handles_errors
def handle(event, context):
    request = service.parse(event)
    return service.respond(request, service.process(request))
