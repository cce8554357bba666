"""The one declaration of the pack's PostgreSQL roles and OpenFaaS secrets.

Everything that names a role or a secret reads it from here: the functions (``settings.secret(...)``),
the local cluster tool (``devtools.pgcluster``: which DSN file it writes for which role and server), the
stack.yml checks (which function mounts which secret) and the Argo CD manifest tests (which role the
CloudNativePG cluster manages). Adding a secret or a role starts here; docs/operations.md says the rest.

Shapes::

    ROLES["writer"].name               -> "nlp_writer"
    SECRETS["ner-writer-dsn"].role     -> "writer"   (a key of ROLES)
    SECRETS["ner-writer-dsn"].server   -> "primary"  ("primary" | "replica" | None for non-DSN secrets)
    function_secrets("entity-stats")   -> ("stats-replica-dsn", "stats-primary-dsn")

A secret is a file ``/var/openfaas/secrets/<name>`` in a function's container (OpenFaaS mounts the
Kubernetes secret of that name there); :func:`functions.runtime.settings.read_secret` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    """A PostgreSQL role of the pack. ``login`` roles get a password and a DSN secret; ``managed`` ones
    are declared in ``argocd/data-plane/cluster.yaml`` (``spec.managed.roles``) with a password secret
    ``<name with dashes>-credentials``."""

    key: str
    name: str
    purpose: str
    managed: bool = True

    @property
    def credentials_secret(self) -> str:
        """The Kubernetes secret CloudNativePG reads the role's password from."""
        return self.name.replace("_", "-") + "-credentials"


@dataclass(frozen=True)
class Secret:
    """An OpenFaaS secret: ``kind`` "dsn" (a libpq connection string for ``role`` on ``server``) or
    "token" (bearer tokens, one per line). ``functions`` mount it (stack.yml ``secrets:``); ``jobs``
    are the Argo CD Jobs/CronJobs that mount it."""

    name: str
    kind: str
    purpose: str
    role: str | None = None
    server: str | None = None
    functions: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()


ROLES: dict[str, Role] = {role.key: role for role in (
    Role("owner", "nlp_owner", "owns every object; runs migrations and retention", managed=False),
    Role("writer", "nlp_writer", "ner-processor: INSERT documents and entities, read the idempotency columns"),
    Role("analyst", "nlp_analyst", "entity-stats and analysts: SELECT on schema analytics"),
    Role("rollup", "nlp_rollup", "the rollup worker: reads new rows of nlp, maintains the analytics rollups"),
)}

# The superuser of a local cluster (devtools only; never in a DSN a function gets).
ADMIN_ROLE = "postgres"

SECRETS: dict[str, Secret] = {secret.name: secret for secret in (
    Secret("ner-writer-dsn", "dsn", "ner-processor's writes on the primary (through the pooler in Kubernetes)",
           role="writer", server="primary", functions=("ner-processor",)),
    Secret("stats-replica-dsn", "dsn", "entity-stats' reads on the streaming replica",
           role="analyst", server="replica", functions=("entity-stats",)),
    Secret("stats-primary-dsn", "dsn", "entity-stats' reads that need fresh data, on the primary",
           role="analyst", server="primary", functions=("entity-stats",)),
    Secret("migrations-dsn", "dsn", "migrations (PreSync Job) and retention (CronJob) as the owner",
           role="owner", server="primary", jobs=("nlp-migrate", "nlp-retention")),
    Secret("rollup-dsn", "dsn", "the rollup worker (Deployment) on the primary",
           role="rollup", server="primary", jobs=("nlp-rollup",)),
    Secret("entity-stats-token", "token", "bearer tokens entity-stats accepts, one per line (rotation: add "
           "the new one, move callers, remove the old one)", functions=("entity-stats",)),
)}


def dsn_secrets() -> dict[str, Secret]:
    """The secrets that hold a DSN, by name."""
    return {name: secret for name, secret in SECRETS.items() if secret.kind == "dsn"}


def function_secrets(function: str) -> tuple[str, ...]:
    """The secrets ``function`` mounts, in declaration order (stack.yml lists exactly these)."""
    return tuple(name for name, secret in SECRETS.items() if function in secret.functions)
