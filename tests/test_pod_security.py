"""The Kubernetes manifests' security, field by field, per manifest and per container.

- Every pod meets the "restricted" Pod Security Standard (non-root uid and gid, no
  privilege escalation, every capability dropped, the runtime's seccomp profile, no host
  namespaces, only the volume types it allows), with a read-only root filesystem and an
  emptyDir at /tmp, no service account token, and CPU and memory requests and limits.
- Each role has its own Secret (its own Redis ACL user), and a container refers to no
  Secret but its own and, for the probes, the reader's: the webhook URLs reach the
  monitor only.
- The probes run ``petsage-heartbeat check`` with the reader's URL and without the
  writer's, shown by running each probe's command for real.
- A NetworkPolicy selects every pod: no ingress (nothing serves), egress to DNS and the
  broker/store ports only, and HTTPS for the monitor alone.
- Every document is valid against the Kubernetes schema (``kubernetes-validate``, strict:
  a misspelt or misplaced field fails).
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import redis
import yaml

from tests.support.helpers import REPO, RedisServer, cli_argv, free_port
from tests.support.processes import run as run_process
from tests.support.publishing import publish
from worker.cli.main import _parser
from worker.core.names import Keys
from worker.publish.beat_marker import BeatMarker
from worker.publish.store import HeartbeatStore

K8S = REPO / "deploy" / "kubernetes"
EXAMPLE_SECRETS = K8S / "examples" / "secrets.yaml"
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod")

#: Each role's Secret and the Redis ACL user its URLs log in as (see docs/security.md).
ROLE_SECRETS = {"beat": "petsage-heartbeat-beat", "worker": "petsage-heartbeat-worker",
                "monitor": "petsage-heartbeat-monitor", "reader": "petsage-heartbeat-reader"}
ROLE_USERS = {"beat": "petsage-beat", "worker": "petsage-worker",
              "monitor": "petsage-monitor", "reader": "petsage-reader"}
#: The Secrets each container may refer to: its own, and the reader's for its probes.
ALLOWED_SECRETS = {
    "beat": {ROLE_SECRETS["beat"], ROLE_SECRETS["reader"]},
    "worker": {ROLE_SECRETS["worker"], ROLE_SECRETS["reader"]},
    "monitor": {ROLE_SECRETS["monitor"]},
}
WEBHOOK_KEYS = {"HEARTBEAT_WEBHOOK_URLS", "HEARTBEAT_DASHBOARD_URL"}
WRITER_KEYS = ("CELERY_BROKER_URL", "HEARTBEAT_REDIS_URL")
READER_ENV = "PETSAGE_READER_URL"
PROBE_PREFIX = f'unset CELERY_BROKER_URL; HEARTBEAT_REDIS_URL="${{{READER_ENV}:?}}" exec '

#: What the restricted standard allows a pod to mount.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}
#: DNS, Redis, Redis TLS, Sentinel, RabbitMQ, AMQPS.
DNS = {("UDP", 53), ("TCP", 53)}
BROKER_AND_STORE = {("TCP", 6379), ("TCP", 6380), ("TCP", 26379), ("TCP", 5672), ("TCP", 5671)}
HTTPS = ("TCP", 443)


# --- reading the manifests -----------------------------------------------------------------

def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _applied() -> list[dict[str, Any]]:
    """What ``kubectl apply -f deploy/kubernetes/`` applies (it does not recurse)."""
    return [d for path in sorted(K8S.glob("*.yaml")) for d in _docs(path)]


def _workloads() -> dict[str, dict[str, Any]]:
    found = {d["metadata"]["name"]: d for d in _applied() if d["kind"] in WORKLOADS}
    assert len(found) >= 3, sorted(found)
    return found


def _pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    """The pod (metadata and spec) a workload of any kind runs."""
    if workload["kind"] == "Pod":
        return workload
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]  # type: ignore[no-any-return]


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def _role(workload: dict[str, Any]) -> str:
    return str(workload["metadata"]["labels"]["app.kubernetes.io/component"])


def _secrets_referenced(container: dict[str, Any], pod_spec: dict[str, Any]) -> set[str]:
    """Every Secret a container can read: envFrom, env, and the volumes it mounts."""
    names = {ref["secretRef"]["name"] for ref in container.get("envFrom", [])
             if "secretRef" in ref}
    names |= {var["valueFrom"]["secretKeyRef"]["name"] for var in container.get("env", [])
              if "secretKeyRef" in var.get("valueFrom", {})}
    mounted = {m["name"] for m in container.get("volumeMounts", [])}
    for volume in pod_spec.get("volumes", []):
        if volume["name"] not in mounted:
            continue
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    return names


def _example_secrets() -> dict[str, dict[str, str]]:
    docs = _docs(EXAMPLE_SECRETS)
    assert all(d["kind"] == "Secret" for d in docs)
    return {d["metadata"]["name"]: d["stringData"] for d in docs}


WORKLOAD_NAMES = sorted(_workloads())


# --- the schema ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(p.relative_to(K8S).as_posix()
                                        for p in K8S.rglob("*.yaml")))
def test_every_document_is_valid_against_the_kubernetes_schema(path: str) -> None:
    for document in _docs(K8S / path):
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(),
                                     strict=True)


# --- the restricted Pod Security Standard, and more ----------------------------------------

@pytest.mark.parametrize("name", WORKLOAD_NAMES)
def test_the_pod_meets_the_restricted_standard(name: str) -> None:
    pod_spec = _pod_template(_workloads()[name])["spec"]
    pod = pod_spec.get("securityContext", {})
    assert pod_spec.get("automountServiceAccountToken") is False  # nothing calls the API
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod_spec.get(host), host
    for volume in pod_spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        assert kinds <= RESTRICTED_VOLUMES, (volume["name"], kinds)
    assert not pod.get("sysctls"), "sysctls"
    for container in _containers(pod_spec):
        own = container.get("securityContext", {})

        def effective(field: str, own: dict[str, Any] = own) -> Any:
            return own[field] if field in own else pod.get(field)

        where = f"{name}/{container['name']}"
        assert effective("runAsNonRoot") is True, where
        for field in ("runAsUser", "runAsGroup"):
            value = effective(field)
            assert isinstance(value, int) and value > 0, (where, field, value)
        assert (effective("seccompProfile") or {}).get("type") == "RuntimeDefault", where
        assert own.get("allowPrivilegeEscalation") is False, where
        assert own.get("privileged", False) is False, where
        assert own.get("capabilities", {}).get("drop") == ["ALL"], where
        assert not own.get("capabilities", {}).get("add"), where
        assert own.get("readOnlyRootFilesystem") is True, where
        assert "procMount" not in own and "windowsOptions" not in own, where
        assert not any(p.get("hostPort") for p in container.get("ports", [])), where


@pytest.mark.parametrize("name", WORKLOAD_NAMES)
def test_tmp_is_a_writable_empty_dir_under_the_read_only_root(name: str) -> None:
    """The liveness probe keeps its state file in /tmp (``$TMPDIR``), and the worker's pool
    its temporary files; nothing else writes outside /dev/shm (beat's schedule is in
    memory)."""
    pod_spec = _pod_template(_workloads()[name])["spec"]
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    for container in _containers(pod_spec):
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        assert "/tmp" in mounts, f"{name}/{container['name']} has no /tmp"
        tmp = mounts["/tmp"]
        assert "emptyDir" in volumes[tmp["name"]] and not tmp.get("readOnly"), name
        assert "sizeLimit" in volumes[tmp["name"]]["emptyDir"], name
        assert "TMPDIR" not in {v["name"] for v in container.get("env", [])}, name


@pytest.mark.parametrize("name", WORKLOAD_NAMES)
def test_every_container_has_cpu_and_memory_requests_and_limits(name: str) -> None:
    for container in _containers(_pod_template(_workloads()[name])["spec"]):
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(kind, {})), (
                name, container["name"], kind)


# --- secrets per role ----------------------------------------------------------------------

def test_no_secret_is_applied_with_the_manifests() -> None:
    """A Secret among the applied manifests would replace the real one on every apply."""
    assert [d["metadata"]["name"] for d in _applied() if d["kind"] == "Secret"] == []
    (config,) = [d for d in _applied() if d["kind"] == "ConfigMap"]
    assert not any("URL" in key for key in config["data"])


def test_each_role_has_a_secret_with_its_own_acl_user() -> None:
    secrets = _example_secrets()
    assert set(secrets) == set(ROLE_SECRETS.values())
    for role, secret in ROLE_SECRETS.items():
        urls = {k: v for k, v in secrets[secret].items() if k in WRITER_KEYS}
        assert urls, secret
        for key, url in urls.items():
            assert urlsplit(url).username == ROLE_USERS[role], (secret, key)
    assert set(secrets[ROLE_SECRETS["reader"]]) == {"HEARTBEAT_REDIS_URL"}


def test_the_webhook_urls_are_in_the_monitors_secret_only() -> None:
    holders = {name for name, data in _example_secrets().items() if WEBHOOK_KEYS & set(data)}
    assert holders == {ROLE_SECRETS["monitor"]}
    for name, workload in _workloads().items():
        for container in _containers(_pod_template(workload)["spec"]):
            plain = {v["name"] for v in container.get("env", []) if "value" in v}
            assert not plain & {*WEBHOOK_KEYS, *WRITER_KEYS, READER_ENV}, name


@pytest.mark.parametrize("name", WORKLOAD_NAMES)
def test_no_container_refers_to_a_secret_it_does_not_need(name: str) -> None:
    workload = _workloads()[name]
    pod_spec = _pod_template(workload)["spec"]
    role = _role(workload)
    for container in _containers(pod_spec):
        referenced = _secrets_referenced(container, pod_spec)
        assert referenced == ALLOWED_SECRETS[role], (name, container["name"], referenced)
        # Its own role's Secret is the one loaded whole; the reader's gives one variable.
        whole = {r["secretRef"]["name"] for r in container.get("envFrom", []) if "secretRef" in r}
        assert whole == {ROLE_SECRETS[role]}, (name, whole)
    assert not [v for v in pod_spec.get("volumes", []) if "secret" in v or "projected" in v]


def test_every_secret_key_referenced_exists_in_the_example() -> None:
    secrets = _example_secrets()
    for workload in _workloads().values():
        for container in _containers(_pod_template(workload)["spec"]):
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["key"] in secrets[ref["name"]], ref


def test_the_docs_create_the_secrets_the_example_shows() -> None:
    """docs/kubernetes.md's ``kubectl create secret`` commands: one per role, same keys."""
    text = (REPO / "docs" / "kubernetes.md").read_text(encoding="utf-8")
    created: dict[str, set[str]] = {}
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True) if line.startswith("kubectl ") else []
        if words[:4] == ["kubectl", "create", "secret", "generic"]:
            created[words[4]] = {w.removeprefix("--from-literal=").split("=")[0]
                                 for w in words[5:] if w.startswith("--from-literal=")}
    assert created == {name: set(data) for name, data in _example_secrets().items()}


# --- probes as the reader ------------------------------------------------------------------

def _probes(workload: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [(kind, container, container[kind])
            for container in _containers(_pod_template(workload)["spec"])
            for kind in ("readinessProbe", "livenessProbe", "startupProbe") if kind in container]


def _probe_argv(script: str) -> list[str]:
    """The ``petsage-heartbeat`` argv of a probe's ``sh -c`` script."""
    assert script.startswith(PROBE_PREFIX), script
    return shlex.split(script.removeprefix(PROBE_PREFIX))


PROBED = sorted(name for name, w in _workloads().items() if _probes(w))


def test_the_beat_and_worker_pods_have_probes() -> None:
    assert {_role(_workloads()[name]) for name in PROBED} >= {"beat", "worker"}


@pytest.mark.parametrize("name", PROBED)
def test_probes_run_check_with_the_readers_url_and_not_the_writers(name: str) -> None:
    for kind, container, probe in _probes(_workloads()[name]):
        command = probe["exec"]["command"]
        assert command[:2] == ["sh", "-c"] and len(command) == 3, (name, kind)
        argv = _probe_argv(command[2])
        assert argv[:2] == ["petsage-heartbeat", "check"], (name, kind)
        args = _parser().parse_args(argv[1:])  # every flag exists
        assert args.redis is None, "a URL in a flag shows in ps"
        assert args.timeout < probe["timeoutSeconds"], (name, kind)
        (reader,) = [v for v in container["env"] if v["name"] == READER_ENV]
        assert reader["valueFrom"]["secretKeyRef"] == {
            "name": ROLE_SECRETS["reader"], "key": "HEARTBEAT_REDIS_URL"}


@pytest.fixture
def healthy_fleet(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    client.flushall()
    publish(client, "petsage")
    keys = Keys()
    BeatMarker(client, keys, "petsage", interval_s=10, retention_s=3600).record_publish()
    HeartbeatStore(client, keys, retention_s=3600, history_len=100).record_node(
        "petsage", "heartbeat@pod-a", retention_s=600)
    yield client
    client.flushall()
    client.close()


@pytest.mark.parametrize("name", PROBED)
def test_each_probe_command_reads_as_the_reader_when_run(
        name: str, redis_server: RedisServer, healthy_fleet: redis.Redis,
        tmp_path: Path) -> None:
    """Each probe's script, run by ``sh`` in the container's environment: the writer's URLs
    lead to a closed port (a probe that used them would say UNKNOWN, exit 3), the reader's
    to a healthy store. It passes, and ``petsage-heartbeat`` sees no writer URL at all."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "probe-env"
    real = shlex.join(cli_argv())
    (bin_dir / "petsage-heartbeat").write_text(
        f'#!/bin/sh\nenv > {shlex.quote(str(seen))}\nexec {real} "$@"\n')
    (bin_dir / "petsage-heartbeat").chmod(0o755)
    writer = f"redis://petsage-writer:WRITER@127.0.0.1:{free_port()}/0"
    reader = redis_server.url
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEARTBEAT_", "CELERY_"))}
    env.update({"CELERY_BROKER_URL": writer, "HEARTBEAT_REDIS_URL": writer,
                READER_ENV: reader, "POD_NAME": "pod-a", "TMPDIR": str(tmp_path),
                "PATH": os.pathsep.join([str(bin_dir), env.get("PATH", os.defpath)]),
                "PYTHONPATH": str(REPO)})
    sh = shutil.which("sh")
    assert sh is not None
    for kind, _container, probe in _probes(_workloads()[name]):
        seen.unlink(missing_ok=True)
        done = run_process([sh, "-c", probe["exec"]["command"][2]], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, (kind, done.stdout + done.stderr)
        probe_env = dict(line.split("=", 1) for line in seen.read_text().splitlines()
                         if "=" in line)
        assert probe_env["HEARTBEAT_REDIS_URL"] == reader, kind
        assert "CELERY_BROKER_URL" not in probe_env, kind
        assert writer not in probe_env.values(), kind

        # Without the reader's URL the probe fails, and never falls back to the writer's.
        seen.unlink()
        bare = {k: v for k, v in env.items() if k != READER_ENV}
        done = run_process([sh, "-c", probe["exec"]["command"][2]], env=bare, cwd=tmp_path,
                           capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode != 0 and not seen.exists(), (kind, done.stdout + done.stderr)
        assert READER_ENV in done.stderr, done.stderr


# --- the NetworkPolicy ---------------------------------------------------------------------

def _policies() -> list[dict[str, Any]]:
    return [d for d in _applied() if d["kind"] == "NetworkPolicy"]


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    assert set(selector) <= {"matchLabels"}, "only matchLabels is read here"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _ports(rules: list[dict[str, Any]]) -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    for rule in rules:
        assert rule.get("ports"), f"a rule without ports allows every port: {rule}"
        for port in rule["ports"]:
            assert "endPort" not in port and isinstance(port["port"], int), port
            found.add((port.get("protocol", "TCP"), port["port"]))
    return found


def _serve_ports() -> dict[str, set[int]]:
    """The containerPorts of the pods that run ``petsage-heartbeat serve``, by workload."""
    found: dict[str, set[int]] = {}
    for name, workload in _workloads().items():
        for container in _containers(_pod_template(workload)["spec"]):
            if container.get("command", [])[:2] == ["petsage-heartbeat", "serve"]:
                found[name] = {p["containerPort"] for p in container.get("ports", [])}
    return found


def test_the_network_policy_is_in_its_own_file() -> None:
    assert [d["kind"] for d in _docs(K8S / "networkpolicy.yaml")] == ["NetworkPolicy"] * len(
        _docs(K8S / "networkpolicy.yaml"))
    assert len(_policies()) == len(_docs(K8S / "networkpolicy.yaml"))


@pytest.mark.parametrize("name", WORKLOAD_NAMES)
def test_a_network_policy_selects_the_pod_for_ingress_and_egress(name: str) -> None:
    workload = _workloads()[name]
    labels = _pod_template(workload)["metadata"]["labels"]
    selecting = [p for p in _policies() if _selects(p, labels)]
    types = {t for p in selecting for t in p["spec"]["policyTypes"]}
    assert {"Ingress", "Egress"} <= types, (name, types)

    egress = _ports([r for p in selecting if "Egress" in p["spec"]["policyTypes"]
                     for r in p["spec"].get("egress", [])])
    assert egress >= DNS, name
    if _role(workload) == "monitor":
        assert egress == DNS | BROKER_AND_STORE | {HTTPS}, (name, egress)
    else:
        assert egress == DNS | BROKER_AND_STORE, (name, egress)

    ingress = [r for p in selecting if "Ingress" in p["spec"]["policyTypes"]
               for r in p["spec"].get("ingress", [])]
    serves = _serve_ports().get(name, set())
    assert _ports(ingress) == {("TCP", port) for port in serves}, (name, ingress)


def test_https_egress_is_the_monitors_and_not_to_private_or_metadata_addresses() -> None:
    for policy in _policies():
        for rule in policy["spec"].get("egress", []):
            if HTTPS not in _ports([rule]):
                continue
            assert policy["spec"]["podSelector"]["matchLabels"].get(
                "app.kubernetes.io/component") == "monitor", policy["metadata"]["name"]
            assert rule.get("to"), "HTTPS to anywhere, the cluster included"
            for peer in rule["to"]:
                block = peer["ipBlock"]
                if block["cidr"] == "0.0.0.0/0":
                    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                            "169.254.0.0/16"} <= set(block["except"])
