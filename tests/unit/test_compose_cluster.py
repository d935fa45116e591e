"""The compose profile `cluster` (docs/scaling.md): three RabbitMQ nodes that form one cluster by
classic config peer discovery with one Erlang cookie from .env, a three-member MongoDB replica
set with its init job, and the processes on every node; the default profile stays one node each.
No Docker engine here: the file is read as compose would, and `docker-compose config` checks it
where that command is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymongo.uri_parser import parse_uri

from infra.rabbitmq.nodes import node_urls
from infra.runtime.settings.connections import RabbitMQSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
RABBITMQ_NODES = ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"]
MONGODB_MEMBERS = ["mongodb-1", "mongodb-2", "mongodb-3"]
PROCESSES = ["gateway", "worker", "projector", "scheduler"]


def services(profile: str | None) -> dict[str, dict[str, Any]]:
    """The services `docker compose` starts with `profile` alone (None: the default)."""
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return {name: service for name, service in loaded["services"].items()
            if service.get("profiles", [None]) == [profile]}


def with_passwords(value: str) -> str:
    """`value` as compose would give it, with a made-up value for each required variable."""
    return re.sub(r"\$\{([A-Z_]+):\?[^}]*\}", lambda match: match.group(1).lower(), value)


def test_the_default_profile_is_one_node_of_each() -> None:
    default = services(None)
    images = [service.get("image", "") for service in default.values()]

    assert [image for image in images if image.startswith("rabbitmq:")] == [
        "rabbitmq:3.13-management"]
    assert [image for image in images if image.startswith("mongo:")] == ["mongo:7"]
    assert not set(default) & {*RABBITMQ_NODES, *MONGODB_MEMBERS}
    for name in PROCESSES:
        url = parse_uri(with_passwords(default[name]["environment"]["MONGODB_URL"]))
        assert url["nodelist"] == [("mongodb", 27017)]
        assert "replicaSet" not in url["options"]
    setup = default["rabbitmq-setup"]["environment"]["RABBITMQ_URL"]
    assert len(node_urls(with_passwords(setup))) == 1


def test_the_cluster_profile_has_three_rabbitmq_nodes_sharing_one_cookie() -> None:
    cluster = services("cluster")
    nodes = {name: cluster[name] for name in RABBITMQ_NODES}
    config = (ROOT / "deploy" / "rabbitmq" / "cluster.conf").read_text()

    assert {node["hostname"] for node in nodes.values()} == set(RABBITMQ_NODES)
    assert {node["environment"]["ERLANG_COOKIE"] for node in nodes.values()} == {
        "${RABBITMQ_ERLANG_COOKIE:-}"}
    assert all("./deploy/rabbitmq/cluster.conf:/etc/rabbitmq/conf.d/20-cluster.conf:ro"
               in node["volumes"] for node in nodes.values())
    assert "cluster_formation.peer_discovery_backend = classic_config" in config
    assert re.findall(r"classic_config\.nodes\.\d = rabbit@(\S+)", config) == RABBITMQ_NODES
    assert "cluster_partition_handling = pause_minority" in config
    # Classic config has no lock: the nodes start one after another.
    assert nodes["rabbitmq-2"]["depends_on"] == {"rabbitmq-1": {"condition": "service_healthy"}}
    assert nodes["rabbitmq-3"]["depends_on"] == {"rabbitmq-2": {"condition": "service_healthy"}}
    # Each node has a volume of its own, and keeps its data across restarts (its node name is
    # its hostname).
    volumes = [next(v for v in node["volumes"] if v.endswith(":/var/lib/rabbitmq"))
               for node in nodes.values()]
    assert len(set(volumes)) == 3


def test_the_cluster_node_entry_scripts_refuse_to_start_without_their_secret() -> None:
    for script, variable in [("rabbitmq/cluster-node.sh", "ERLANG_COOKIE"),
                             ("mongodb/replica-member.sh", "REPLICA_SET_KEY")]:
        path = ROOT / "deploy" / script
        assert path.stat().st_mode & 0o111, f"{script} is not executable"
        assert f': "${{{variable}:?' in path.read_text()
    env_example = (ROOT / ".env.example").read_text()
    assert re.search(r"^RABBITMQ_ERLANG_COOKIE=$", env_example, re.MULTILINE)
    assert re.search(r"^MONGO_REPLICA_SET_KEY=$", env_example, re.MULTILINE)


def test_the_cluster_profile_has_a_three_member_replica_set_and_its_init_job() -> None:
    cluster = services("cluster")
    init = cluster["mongodb-replica-set"]
    script = (ROOT / "deploy" / "mongodb" / "init-replica-set.js").read_text()

    assert all(cluster[name]["environment"]["REPLICA_SET_KEY"] == "${MONGO_REPLICA_SET_KEY:-}"
               for name in MONGODB_MEMBERS)
    assert "--replSet rs0" in (ROOT / "deploy" / "mongodb" / "replica-member.sh").read_text()
    assert init["depends_on"] == {name: {"condition": "service_healthy"}
                                  for name in MONGODB_MEMBERS}
    assert init["restart"] == "no"
    assert "./deploy/mongodb/init-replica-set.js:/init-replica-set.js:ro" in init["volumes"]
    assert "rs.initiate" in script
    assert re.findall(r'host: "([a-z0-9-]+):27017"', script) == MONGODB_MEMBERS


def test_the_cluster_profiles_processes_name_every_node() -> None:
    cluster = services("cluster")
    setup = with_passwords(cluster["rabbitmq-setup-cluster"]["environment"]["RABBITMQ_URL"])

    # `rabbitmq setup` writes every node of its RABBITMQ_URL into each user's URL.
    assert [url.split("@")[1].split(":")[0] for url in node_urls(setup)] == RABBITMQ_NODES
    RabbitMQSettings(rabbitmq_url=setup, taskproc_env="production")  # one user, one vhost
    for name in PROCESSES:
        process = cluster[f"{name}-cluster"]
        url = parse_uri(with_passwords(process["environment"]["MONGODB_URL"]))
        assert url["nodelist"] == [(member, 27017) for member in MONGODB_MEMBERS]
        assert url["options"]["replicaSet"] == "rs0"
        assert process["volumes"] == ["rabbitmq-cluster-credentials:/run/taskproc:ro"]
        assert process["depends_on"]["rabbitmq-setup-cluster"]["condition"] == (
            "service_completed_successfully")
        assert process["depends_on"]["mongodb-replica-set"]["condition"] == (
            "service_completed_successfully")


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="docker-compose (v1, Debian's package) is not installed")
@pytest.mark.parametrize("profile", [[], ["--profile", "cluster"]])
def test_docker_compose_config_accepts_the_file(tmp_path: Path, profile: list[str]) -> None:
    names = set(re.findall(r"\$\{([A-Z_]+):[?-]", COMPOSE.read_text()))
    (tmp_path / ".env").write_text("".join(f"{name}=x\n" for name in sorted(names)))
    result = subprocess.run(
        ["docker-compose", "--project-directory", str(tmp_path), "-f", str(COMPOSE), *profile,
         "config", "--quiet"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
