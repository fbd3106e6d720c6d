"""The Kubernetes examples: one beat with Recreate, probes that use ``check`` correctly."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from tests.support.helpers import REPO
from worker.cli.main import _parser

K8S = REPO / "deploy" / "kubernetes"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _container(name: str) -> dict[str, Any]:
    (deployment,) = _docs(K8S / f"{name}.yaml")
    assert deployment["kind"] == "Deployment"
    return deployment["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def test_beat_runs_exactly_one_replica_and_never_two_during_a_rollout() -> None:
    (deployment,) = _docs(K8S / "beat.yaml")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert _container("beat")["command"][:4] == ["celery", "-A", "worker", "beat"]


def test_workers_consume_the_heartbeat_queue() -> None:
    command = _container("worker")["command"]
    assert command[:4] == ["celery", "-A", "worker", "worker"]
    assert command[command.index("-Q") + 1] == "heartbeat.petsage"


def probe_argv(command: list[str]) -> list[str]:
    """A probe's ``petsage-heartbeat`` argv, also when wrapped in ``sh -c "... exec ..."``
    (the probes set the reader's URL first: see tests/test_pod_security.py)."""
    if command[:2] == ["sh", "-c"]:
        return shlex.split(command[2].rpartition("exec ")[2])
    return command


def test_probes_use_check_and_liveness_probes_their_own_component() -> None:
    for name, component in (("beat", ["--beat"]), ("worker", ["--node", "$POD_NAME"])):
        container = _container(name)
        readiness = probe_argv(container["readinessProbe"]["exec"]["command"])
        liveness = probe_argv(container["livenessProbe"]["exec"]["command"])
        for probe, command in (("readinessProbe", readiness), ("livenessProbe", liveness)):
            assert command[:2] == ["petsage-heartbeat", "check"]
            args = _parser().parse_args(command[1:])  # every flag exists
            assert args.timeout < container[probe]["timeoutSeconds"]
        assert "--liveness" not in readiness and "--liveness" in liveness
        flag = component[0]
        assert liveness[liveness.index(flag):liveness.index(flag) + len(component)] == component


def test_urls_come_from_a_secret_not_the_config_map() -> None:
    (config,) = _docs(K8S / "config.yaml")
    assert config["kind"] == "ConfigMap"
    assert not any("URL" in key for key in config["data"])
    secrets = _docs(K8S / "examples" / "secrets.yaml")
    assert secrets and all(s["kind"] == "Secret" for s in secrets)
    assert all("URL" in key for s in secrets for key in s["stringData"])


def test_the_monitor_runs_two_replicas_with_a_command_that_exists() -> None:
    (deployment,) = _docs(K8S / "monitor.yaml")
    assert deployment["spec"]["replicas"] >= 2  # several monitors: high availability
    command = _container("monitor")["command"]
    assert command[:2] == ["petsage-heartbeat", "monitor"]
    assert _parser().parse_args(command[1:]).command == "monitor"
