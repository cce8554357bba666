"""ner-processor: named entities of one comment or a batch, persisted on the PostgreSQL primary.

python3-http contract: ``handle(event, context)`` returns ``{"statusCode", "body", "headers"}``.
The model and the database pool are created once per container, when this module is imported.
"""

from functions.runtime import ner_service
from functions.runtime.http import handles_errors

service = ner_service.get()


@handles_errors
def handle(event, context):
    request = service.parse(event)
    body = service.process(request)
    return service.respond(request, body)
