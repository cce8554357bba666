"""ner-processor: named entities of one comment or a batch, persisted on the PostgreSQL primary.

python3-http contract: ``handle(event, context)`` returns ``{"statusCode", "body", "headers"}``.
The service (model worker + writer pool) is created once per container, when this module is imported.
"""

from functions.runtime import app
from functions.runtime.http import handles_errors
from functions.runtime.ner_service import build

service = app.create(build)


@handles_errors
def handle(event, context):
    request = service.parse(event)
    return service.respond(request, service.process(request))
