"""The GitOps behaviour the Argo CD objects promise: one project that allows exactly what the apps deploy,
automated sync with prune + self-heal, retries with backoff, CreateNamespace, ordered waves, the PreSync
migration, and health checks that really classify Function objects."""

from __future__ import annotations

import pytest

from functions.runtime import credentials
from tests.deploy.conftest import ARGOCD, load_all, load_yaml

APP_FILES = ["bootstrap/root-app.yaml", "apps/data-plane.yaml", "apps/logging.yaml", "apps/functions.yaml"]


@pytest.fixture(scope="module")
def project() -> dict:
    return load_yaml(ARGOCD / "bootstrap" / "project.yaml")


@pytest.fixture(scope="module")
def applications() -> dict[str, dict]:
    return {name: load_yaml(ARGOCD / name) for name in APP_FILES}


def _sources(app: dict) -> list[dict]:
    return app["spec"].get("sources") or [app["spec"]["source"]]


def test_every_application_syncs_automatically_with_prune_self_heal_and_backoff(applications):
    for name, app in applications.items():
        policy = app["spec"]["syncPolicy"]
        assert policy["automated"] == {"prune": True, "selfHeal": True}, name
        assert policy["retry"]["limit"] >= 3, name
        backoff = policy["retry"]["backoff"]
        assert backoff["factor"] >= 2 and backoff["duration"] and backoff["maxDuration"], name
        if name != "bootstrap/root-app.yaml":
            assert "CreateNamespace=true" in policy.get("syncOptions", []), name


def test_every_application_uses_the_project_and_stays_inside_it(applications, project):
    allowed_repos = set(project["spec"]["sourceRepos"])
    allowed_destinations = {(d["server"], d["namespace"]) for d in project["spec"]["destinations"]}
    for name, app in applications.items():
        assert app["spec"]["project"] == project["metadata"]["name"], name
        assert {s["repoURL"] for s in _sources(app)} <= allowed_repos, name
        destination = app["spec"]["destination"]
        assert (destination["server"], destination["namespace"]) in allowed_destinations, name


def test_project_allows_every_kind_the_apps_render_and_nothing_else(rendered, project):
    namespaced = {(k["group"], k["kind"]) for k in project["spec"]["namespaceResourceWhitelist"]}
    cluster = {(k["group"], k["kind"]) for k in project["spec"]["clusterResourceWhitelist"]}
    used = set()
    for directory in ("argocd/apps", "argocd/data-plane", "argocd/logging", "argocd/migrations"):
        for obj in rendered[directory]:
            group = obj["apiVersion"].rpartition("/")[0]
            used.add((group, obj["kind"]))
    used.add(("openfaas.com", "Function"))  # rendered by the CMP
    used.add(("", "Namespace"))  # CreateNamespace=true
    assert used <= namespaced | cluster, f"not allowed: {sorted(used - namespaced - cluster)}"
    assert (namespaced | cluster) - used == set(), (
        f"allowed but unused: {sorted((namespaced | cluster) - used)}"
    )
    assert ("", "Secret") not in namespaced, "secrets are created out of band, never synced from git"


def test_app_of_apps_orders_data_plane_before_functions(applications, rendered):
    wave = {
        a["metadata"]["name"]: int(a["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
        for a in rendered["argocd/apps"]
    }
    assert wave["nlp-data-plane"] < wave["nlp-functions"]
    root = applications["bootstrap/root-app.yaml"]
    assert _sources(root)[0]["path"] == "argocd/apps"


def test_migrations_run_as_a_presync_hook_of_the_functions_app_with_the_release_image(
    applications, rendered, stack
):
    functions_app = applications["apps/functions.yaml"]
    assert "argocd/migrations" in {s.get("path") for s in _sources(functions_app)}
    [job] = [o for o in rendered["argocd/migrations"] if o["kind"] == "Job"]
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == stack["functions"]["ner-processor"]["image"]
    assert container["command"][:3] == ["python", "-m", "functions.runtime.migrate"]
    assert container["command"][3:] == ["--dsn-secret", "migrations-dsn"]
    assert job["metadata"]["namespace"] == functions_app["spec"]["destination"]["namespace"]


def test_data_plane_is_a_primary_with_one_replica_and_a_pooler_in_front_of_the_primary(rendered):
    objects = {o["kind"]: o for o in rendered["argocd/data-plane"]}
    cluster, pooler = objects["Cluster"], objects["Pooler"]
    assert cluster["spec"]["instances"] == 2
    assert pooler["spec"]["cluster"]["name"] == cluster["metadata"]["name"]
    assert pooler["spec"]["type"] == "rw"
    assert pooler["metadata"]["name"] != cluster["metadata"]["name"]
    # neither a prune nor an Application deletion may take the database with it
    options = cluster["metadata"]["annotations"]["argocd.argoproj.io/sync-options"].split(",")
    assert {"Delete=false", "Prune=false"} <= set(options)
    refs = cluster["spec"]["bootstrap"]["initdb"]["postInitApplicationSQLRefs"]["configMapRefs"]
    assert refs[0]["name"] == objects["ConfigMap"]["metadata"]["name"]
    assert refs[0]["key"] in objects["ConfigMap"]["data"]


def test_data_plane_manages_exactly_the_declared_roles_with_their_password_secrets():
    [cluster] = [o for o in load_all((ARGOCD / "data-plane" / "cluster.yaml").read_text()) if o["kind"] == "Cluster"]
    managed = {role["name"]: role["passwordSecret"]["name"] for role in cluster["spec"]["managed"]["roles"]}
    declared = {role.name: role.credentials_secret for role in credentials.ROLES.values() if role.managed}
    assert managed == declared
    assert all(role["login"] and role["ensure"] == "present" for role in cluster["spec"]["managed"]["roles"])


def _pod_spec(obj: dict) -> dict:
    template = obj["spec"]["jobTemplate"]["spec"]["template"] if obj["kind"] == "CronJob" else obj["spec"]["template"]
    return template["spec"]


def test_the_jobs_mounting_each_secret_are_the_ones_credentials_declares():
    workloads = [obj for path in sorted(ARGOCD.rglob("*.yaml")) for obj in load_all(path.read_text())
                 if obj.get("kind") in ("Job", "CronJob", "Deployment")]
    assert workloads, "no Job, CronJob or Deployment under argocd/"
    mounted: dict[str, set[str]] = {}
    for obj in workloads:
        for volume in _pod_spec(obj).get("volumes") or []:
            if "secret" in volume:
                mounted.setdefault(volume["secret"]["secretName"], set()).add(obj["metadata"]["name"])
    declared = {name: set(secret.jobs) for name, secret in credentials.SECRETS.items() if secret.jobs}
    assert mounted == declared


def test_logging_config_maps_are_generated_from_the_files_in_logstash(rendered):
    from tests.deploy.conftest import ROOT

    config = {
        o["metadata"]["name"].rsplit("-", 1)[0]: o
        for o in rendered["argocd/logging"]
        if o["kind"] == "ConfigMap"
    }
    assert config["filebeat-config"]["data"]["filebeat.yml"] == (ROOT / "logstash/filebeat.yml").read_text()
    assert (
        config["logstash-pipeline"]["data"]["nlp-pipeline.conf"]
        == (ROOT / "logstash/pipeline/nlp-pipeline.conf").read_text()
    )
    assert (
        config["logstash-index-template"]["data"]["index-template.json"]
        == (ROOT / "logstash/index-template.json").read_text()
    )
    workloads = {
        o["metadata"]["name"]: o
        for o in rendered["argocd/logging"]
        if o["kind"] in ("Deployment", "DaemonSet")
    }
    mounted = {
        v["configMap"]["name"]
        for w in workloads.values()
        for v in w["spec"]["template"]["spec"]["volumes"]
        if "configMap" in v
    }
    # the workloads mount the hashed names, so a changed file rolls them
    assert mounted == {c["metadata"]["name"] for c in config.values()}


# --- the health checks in argocd-cm, run with Lua 5.1 (Argo CD's gopher-lua dialect) ----------------------


def _lua_health(key: str):
    lua51 = pytest.importorskip("lupa.lua51", reason="lupa not installed: cannot run the health-check Lua")
    script = load_yaml(ARGOCD / "bootstrap" / "argocd-cm.yaml")["data"][key]
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    check = runtime.eval("function(obj) " + script + " end")

    def to_lua(value):
        if isinstance(value, dict):
            return runtime.table_from({k: to_lua(v) for k, v in value.items()})
        if isinstance(value, list):
            return runtime.table_from([to_lua(v) for v in value])
        return value

    def health(obj: dict) -> tuple[str, str]:
        result = check(to_lua(obj))
        return result["status"], result["message"]

    return health


def _function(generation=1, observed=1, **conditions):
    status = {
        "observedGeneration": observed,
        "conditions": [
            {"type": t, "status": s, "reason": "R", "message": f"{t} is {s}"} for t, s in conditions.items()
        ],
    }
    return {"metadata": {"name": "ner-processor", "generation": generation}, "status": status}


def test_function_health_check_classifies_operator_conditions():
    health = _lua_health("resource.customizations.health.openfaas.com_Function")
    assert health({"metadata": {"name": "x", "generation": 1}})[0] == "Progressing"
    assert health(_function(Ready="True", Healthy="True")) == ("Healthy", "Healthy is True")
    assert health(_function(Ready="True", Healthy="False"))[0] == "Progressing"
    assert health(_function(Stalled="True", Ready="False")) == ("Degraded", "Stalled is True")
    assert health(_function(generation=2, observed=1, Ready="True", Healthy="True"))[0] == "Progressing"


def test_application_health_check_reports_the_child_application_health():
    health = _lua_health("resource.customizations.health.argoproj.io_Application")
    assert health({"status": {"health": {"status": "Degraded", "message": "boom"}}}) == ("Degraded", "boom")
    assert health({})[0] == "Progressing"
