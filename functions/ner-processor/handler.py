"""ner-processor: named entities of one comment or a batch, persisted on the PostgreSQL primary.

python3-http contract: ``handle(event, context)`` returns ``{"statusCode", "body", "headers"}``.
The service (model worker + writer pool) is created once per container, when this module is imported.
A request refused for good (4xx) is kept as a dead letter (functions/runtime/rejects.py).
"""

from functions.runtime import app
from functions.runtime.http import handles_errors
from functions.runtime.ner_service import build
from functions.runtime.rejects import RejectRecorder, records_rejects

service = app.create(build)
rejects = RejectRecorder.for_settings("ner-processor", service.settings)


@handles_errors
@records_rejects(rejects)
def handle(event, context):
    request = service.parse(event)
    return service.respond(request, service.process(request))
