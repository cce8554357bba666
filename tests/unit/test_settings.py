"""Settings: one declaration per setting (env name, default, meaning) in functions/runtime/settings.py;
the docs/operations.md Settings table, env.yml and the Dockerfile's ENV agree with it; bad values fail
at start-up naming the
variable. No database, no model."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from functions.runtime import settings as settings_module
from functions.runtime.settings import Settings, SettingsError, defaults_by_env, fields, read_secret

REPO = Path(__file__).resolve().parents[2]
SPECS = {f.metadata["env"]: f for f in fields()}
DEPLOY_SETTINGS = sorted(env for env, f in SPECS.items() if not f.metadata["image_only"])
# env.yml is the functions' environment; the rollup worker's settings are its Deployment's.
FUNCTION_SETTINGS = sorted(env for env in DEPLOY_SETTINGS if not SPECS[env].metadata["worker"])


def readme_table() -> dict[str, str]:
    """{ENV: default text} from the Settings table of docs/operations.md (rows may list several: `A` / `B`)."""
    text = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    table: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0])
        defaults = [d.strip().strip("`") for d in cells[1].split(" / ")] if cells[1] else []
        assert len(names) == len(defaults), f"README row {cells[0]}: {len(names)} names, {len(defaults)} defaults"
        table.update(zip(names, defaults, strict=True))
    return table


def parsed(env: str, text: str):
    """``text`` read the way from_env reads it (empty or 'none' = the default of an optional setting)."""
    if text in ("", "none"):
        return None
    return getattr(Settings.from_env({env: text}), SPECS[env].name)


# -- one place ---------------------------------------------------------------------------------------

def test_every_setting_has_an_env_name_a_meaning_and_a_unique_variable():
    names = [f.metadata["env"] for f in fields()]
    assert len(names) == len(set(names))
    for spec in fields():
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", spec.metadata["env"]), spec.name
        assert spec.metadata["doc"], f"{spec.metadata['env']} has no meaning"


def test_empty_environment_gives_exactly_the_declared_defaults():
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize("env", DEPLOY_SETTINGS)
def test_readme_table_lists_every_deploy_setting_with_its_default(env):
    table = readme_table()
    assert env in table, f"README Settings table lacks {env}"
    assert parsed(env, table[env]) == SPECS[env].default, f"README default of {env}: {table[env]!r}"


def test_readme_table_names_no_unknown_setting_and_no_other_default():
    for env, text in readme_table().items():
        assert env in SPECS, f"README documents {env}, which the runtime does not read"
        assert parsed(env, text) == SPECS[env].default, f"README default of {env}: {text!r}"


def env_yml() -> dict[str, str]:
    return yaml.safe_load((REPO / "env.yml").read_text(encoding="utf-8"))["environment"]


@pytest.mark.parametrize("env", FUNCTION_SETTINGS)
def test_env_yml_sets_every_deploy_setting_to_its_default(env):
    values = env_yml()
    assert env in values, f"env.yml lacks {env}"
    assert isinstance(values[env], str), f"env.yml {env} must be a string (faas-cli stringifies anyway)"
    assert parsed(env, values[env]) == SPECS[env].default, f"env.yml {env}={values[env]!r}"


def test_env_yml_holds_only_known_deploy_settings():
    for env in env_yml():
        assert env in SPECS, f"env.yml sets {env}, which the runtime does not read"
        assert not SPECS[env].metadata["image_only"], f"{env} is set by the image, not env.yml"
        assert not SPECS[env].metadata["worker"], f"{env} is the rollup worker's, not the functions'"


def dockerfile_runtime_env() -> tuple[dict[str, str], dict[str, str]]:
    """(ENV, ARG defaults) of the Dockerfile's last stage (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text(encoding="utf-8"))
    stage = re.split(r"(?im)^FROM\s", text)[-1]
    env, args = {}, {}
    for line in stage.splitlines():
        line = line.strip()
        if line.upper().startswith("ENV "):
            for key, value in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)', line[4:]):
                env[key] = value.strip('"')
        match = re.match(r"ARG\s+([A-Za-z_][A-Za-z0-9_]*)=(\S*)", line)
        if match:
            args[match.group(1)] = match.group(2)
    return env, args


def test_dockerfile_app_settings_agree_with_the_defaults():
    env, args = dockerfile_runtime_env()
    app_settings = {k: v for k, v in env.items() if k in SPECS}
    assert app_settings, "the Dockerfile sets no application setting"
    for key, value in app_settings.items():
        if value.startswith("${"):  # a build arg: its default must agree instead
            arg = value[2:-1]
            if arg in args:
                assert parsed(key, args[arg]) == SPECS[key].default, f"Dockerfile ARG {arg}={args[arg]!r}"
            continue
        assert parsed(key, value) == SPECS[key].default, f"Dockerfile ENV {key}={value!r}"
    # The watchdog's side must point at the runtime server's defaults.
    assert env["ready_path"] == Settings().ready_path
    assert env["upstream_url"] == f"http://{Settings().host}:{Settings().port}"


def test_no_runtime_module_reads_the_environment_outside_settings():
    offenders = []
    for path in sorted((REPO / "functions").rglob("*.py")):
        if path.name == "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"} \
                    and isinstance(node.value, ast.Name) and node.value.id == "os":
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    # contract.py mirrors the template's Context (HOSTNAME), which is not a setting of ours.
    assert [o for o in offenders if not o.startswith("functions/runtime/contract.py")] == []


def test_from_env_runs_once_per_process():
    settings_module.current.cache_clear()
    try:
        first = settings_module.current()
        assert settings_module.current() is first
    finally:
        settings_module.current.cache_clear()


# -- parsing -------------------------------------------------------------------------------------------

INT_SETTINGS = sorted(env for env, f in SPECS.items() if f.metadata["kind"] is int)
FLOAT_SETTINGS = sorted(env for env, f in SPECS.items() if f.metadata["kind"] is float)
BOOL_SETTINGS = sorted(env for env, f in SPECS.items() if f.metadata["kind"] is bool)


@pytest.mark.parametrize("env", INT_SETTINGS)
def test_integer_settings_reject_non_integers_naming_the_variable(env):
    with pytest.raises(SettingsError, match=env):
        Settings.from_env({env: "1.5x"})


@pytest.mark.parametrize("env", INT_SETTINGS + FLOAT_SETTINGS)
def test_numeric_settings_reject_values_below_their_minimum(env):
    minimum = SPECS[env].metadata["min"]
    assert minimum is not None, f"{env} has no lower bound"
    with pytest.raises(SettingsError, match=env):
        Settings.from_env({env: str(minimum - 1)})
    assert getattr(Settings.from_env({env: str(minimum)}), SPECS[env].name) == minimum


@pytest.mark.parametrize("env", FLOAT_SETTINGS)
def test_float_settings_accept_fractions_and_reject_words(env):
    assert getattr(Settings.from_env({env: "2.5"}), SPECS[env].name) == 2.5
    with pytest.raises(SettingsError, match=env):
        Settings.from_env({env: "fast"})


@pytest.mark.parametrize("env", BOOL_SETTINGS)
@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("YES", True), ("1", True), (" on ", True),
                                               ("false", False), ("No", False), ("0", False), ("off", False)])
def test_boolean_settings_accept_the_usual_spellings(env, raw, expected):
    assert getattr(Settings.from_env({env: raw}), SPECS[env].name) is expected


@pytest.mark.parametrize("env", BOOL_SETTINGS)
def test_boolean_settings_reject_other_words(env):
    with pytest.raises(SettingsError, match=env):
        Settings.from_env({env: "maybe"})


@pytest.mark.parametrize("env", sorted(SPECS))
def test_an_empty_value_means_the_default(env):
    assert getattr(Settings.from_env({env: ""}), SPECS[env].name) == SPECS[env].default


def test_spacy_pipeline_is_ner_or_full_case_insensitively():
    assert Settings.from_env({"SPACY_PIPELINE": " FULL "}).spacy_pipeline == "full"
    with pytest.raises(SettingsError, match="SPACY_PIPELINE"):
        Settings.from_env({"SPACY_PIPELINE": "tagger"})


def test_ready_path_must_be_absolute():
    with pytest.raises(SettingsError, match="READY_PATH"):
        Settings.from_env({"READY_PATH": "ready"})


def test_log_level_is_upper_cased():
    assert Settings.from_env({"LOG_LEVEL": "debug"}).log_level == "DEBUG"


def test_prepare_threshold_defaults_to_never_and_takes_an_integer():
    assert Settings().db_prepare_threshold is None
    assert Settings.from_env({"DB_PREPARE_THRESHOLD": "5"}).pool_options()["prepare_threshold"] == 5
    assert Settings.from_env({}).pool_options()["prepare_threshold"] is None


def test_pool_options_come_from_the_settings():
    options = Settings.from_env({"DB_POOL_MIN_SIZE": "0", "DB_POOL_MAX_SIZE": "9", "DB_POOL_TIMEOUT_S": "0.5",
                                 "DB_CONNECT_TIMEOUT_S": "3"}).pool_options()
    assert options == {"min_size": 0, "max_size": 9, "timeout": 0.5, "connect_timeout": 3.0,
                       "prepare_threshold": None}


def test_defaults_by_env_names_every_setting():
    assert defaults_by_env()["BATCH_MAX_WAIT_MS"] == 0.0
    assert set(defaults_by_env()) == set(SPECS)


# -- secrets -------------------------------------------------------------------------------------------

def test_secret_file_wins_over_the_environment_and_is_stripped(tmp_path):
    (tmp_path / "ner-writer-dsn").write_text("host=file\n")
    env = {"SECRETS_DIR": str(tmp_path), "NER_WRITER_DSN": "host=env"}
    assert Settings.from_env(env).secret("ner-writer-dsn") == "host=file"
    assert read_secret("ner-writer-dsn", env) == "host=file"


def test_secret_falls_back_to_the_upper_cased_environment_variable(tmp_path):
    env = {"SECRETS_DIR": str(tmp_path), "STATS_REPLICA_DSN": "host=env"}
    assert Settings.from_env(env).secret("stats-replica-dsn") == "host=env"
    assert Settings.from_env({"SECRETS_DIR": str(tmp_path)}).secret("stats-replica-dsn") is None


def test_an_empty_secret_file_counts_as_missing(tmp_path):
    (tmp_path / "migrations-dsn").write_text("\n")
    assert Settings.from_env({"SECRETS_DIR": str(tmp_path)}).secret("migrations-dsn") is None
