"""A real Prometheus server, set up as the README's Monitoring section says, scrapes a
real sidecar by DNS name and sees ``up == 1``.

Everything runs in one network namespace made for this test: the sidecar listens on the
namespace's "management" addresses, and the README's target names resolve to them
through ``/etc/netns/<ns>/hosts``, which ``ip netns exec`` bind-mounts over
``/etc/hosts``. The scrape configuration is the README's own block, with two changes a
test needs: a 1 s scrape interval (15 s would make the test wait for it) and the rules
file's path in this repository. Prometheus loading the shipped rules is checked too.

The sidecar does not know the target names (no ``http.allowed_hosts``): that is the
point. It answered 421 to such scrapes before ``/metrics`` was exempted from the Host
check.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lablib import REPO_ROOT, require_lab_host, wait_until
from tests.prerequisites import require_command

pytestmark = pytest.mark.integration

README = REPO_ROOT / "README.md"
RULES = REPO_ROOT / "configs" / "prometheus" / "anycast-announcer.rules.yml"
API_PORT = 9179
PROMETHEUS = "127.0.0.1:9090"  # inside the test's namespace, so no other run collides


def readme_scrape_config() -> dict[str, Any]:
    """The README's example Prometheus configuration (the yaml block with scrape_configs)."""
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    found = [block for block in blocks if "scrape_configs:" in block]
    assert len(found) == 1, "README.md should hold one Prometheus example (scrape_configs)"
    document = yaml.safe_load(found[0])
    assert isinstance(document, dict)
    return document


def targets_of(config: dict[str, Any]) -> list[str]:
    return [
        target
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    ]


def netns(namespace: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", namespace, *argv]


@pytest.fixture
def namespace() -> Iterator[str]:
    """A namespace with lo up and an /etc/netns hosts file; removed whatever happens."""
    require_lab_host()
    name = f"aaprom{secrets.token_hex(3)}"
    etc = Path("/etc/netns") / name
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        etc.mkdir(parents=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        shutil.rmtree(etc, ignore_errors=True)
        subprocess.run(["ip", "netns", "delete", name], check=False)


class Processes:
    """Processes started in the namespace; stopped (SIGTERM, then SIGKILL) at teardown."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.started.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    try:
        yield started
    finally:
        started.stop()


def sidecar_config(tmp_path: Path) -> dict[str, Any]:
    """A sidecar whose API listens on every address of the namespace, as a server's would
    on its management address; its BGP peer and service do not exist (not needed here)."""
    return {
        "bgp": {
            "local_as": 65001,
            "router_id": "192.0.2.11",
            "peers": [{"address": "192.0.2.1", "peer_as": 65100}],
        },
        "services": [{"name": "web", "check": {"type": "tcp", "host": "127.0.0.1", "port": 1}}],
        "prefixes": [{"prefix": "10.255.0.1/32", "services": ["web"]}],
        "http": {"listen": f"0.0.0.0:{API_PORT}"},
        "exabgp": {"run_dir": str(tmp_path / "run")},
        "logging": {"format": "json"},
    }


def api_get(namespace: str, path: str) -> Any:
    """GET a Prometheus API path from inside the namespace, parsed from JSON."""
    fetch = (
        "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
        f"{f'http://{PROMETHEUS}{path}'!r}, timeout=5).read().decode())"
    )
    result = subprocess.run(
        netns(namespace, sys.executable, "-c", fetch),
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return json.loads(result.stdout)


def query(namespace: str, promql: str) -> list[dict[str, Any]]:
    """The result vector of an instant query to the namespace's Prometheus."""
    answer = api_get(namespace, "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    assert answer["status"] == "success", answer
    vector: list[dict[str, Any]] = answer["data"]["result"]
    return vector


def scrape_errors(namespace: str) -> str:
    """What Prometheus says about its targets, for a failure message."""
    try:
        targets = api_get(namespace, "/api/v1/targets")["data"]["activeTargets"]
    except (subprocess.SubprocessError, ValueError, KeyError, TypeError) as error:
        return f"unknown ({error!r})"
    return "; ".join(f"{t['labels']['instance']}: {t['health']} {t['lastError']}" for t in targets)


def test_prometheus_scrapes_the_sidecar_by_name(
    namespace: str, processes: Processes, tmp_path: Path
) -> None:
    """Every README target, named by DNS, is up, and carries the sidecar's own series."""
    prometheus = require_command(
        "prometheus", "`make test-deps` installs Debian's prometheus package"
    )
    config = readme_scrape_config()
    targets = targets_of(config)
    assert targets, "the README's example scrapes nothing"

    # One management address per target name, all on the one sidecar of this namespace.
    hosts = ["127.0.0.1 localhost"]
    for index, target in enumerate(targets, start=11):
        name, _, port = target.rpartition(":")
        assert port == str(API_PORT), f"{target}: the README should scrape the default port"
        address = f"192.0.2.{index}"
        subprocess.run(
            ["ip", "-n", namespace, "addr", "add", f"{address}/32", "dev", "lo"], check=True
        )
        hosts.append(f"{address} {name}")
    (Path("/etc/netns") / namespace / "hosts").write_text("\n".join(hosts) + "\n")

    sidecar_yaml = tmp_path / "sidecar.yaml"
    sidecar_yaml.write_text(json.dumps(sidecar_config(tmp_path)))
    sidecar = processes.start(
        netns(namespace, sys.executable, "-m", "anycast_announcer", "run", "-c", str(sidecar_yaml)),
        tmp_path / "sidecar.log",
    )

    for job in config["scrape_configs"]:
        job["scrape_interval"] = "1s"
    config["rule_files"] = [str(RULES)]
    prometheus_yaml = tmp_path / "prometheus.yml"
    prometheus_yaml.write_text(yaml.safe_dump(config))
    processes.start(
        netns(
            namespace,
            prometheus,
            f"--config.file={prometheus_yaml}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={PROMETHEUS}",
        ),
        tmp_path / "prometheus.log",
    )

    def all_up() -> bool:
        up = {sample["metric"]["instance"]: sample["value"][1] for sample in query(namespace, "up")}
        return up == dict.fromkeys(targets, "1")

    try:
        wait_until(all_up, timeout=30, message="Prometheus should see every target up")
    except AssertionError as error:
        log = (tmp_path / "sidecar.log").read_text(errors="replace")[-2000:]
        raise AssertionError(
            f"{error}\ntargets: {scrape_errors(namespace)}\nsidecar running: "
            f"{sidecar.poll() is None}\nsidecar log tail:\n{log}"
        ) from None

    # The scraped series are the sidecar's, labelled as the README's config says.
    announced = query(namespace, 'anycast_prefix_announced{job="anycast-announcer"}')
    assert {sample["metric"]["instance"] for sample in announced} == set(targets)
    assert {sample["metric"]["site"] for sample in announced} == {"dc1", "dc2"}
    # Prometheus loaded the shipped rules (an empty list would mean a rule file error).
    assert api_get(namespace, "/api/v1/rules")["data"]["groups"], "no rule group loaded"
