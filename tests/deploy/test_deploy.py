"""The deployment files shipped in ``deploy/``: Prometheus' own tools accept the scrape
config and the alert rules, and every alert fires on the series it is meant for
(``promtool test rules``); the example run configuration validates; the systemd unit
restarts on failure only and runs a command line ``hidemo`` accepts."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from hidemo.cli import build_parser
from stream.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool not installed: apt-get install prometheus (.ci/run installs it)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def test_the_shipped_alert_rules_load() -> None:
    result = promtool("check", "rules", str(DEPLOY / "hidemo-alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_the_shipped_scrape_config_is_valid_with_its_rules() -> None:
    result = promtool("check", "config", str(DEPLOY / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_each_alert_fires_on_its_series_and_not_before() -> None:
    result = promtool("test", "rules", str(ROOT / "tests" / "deploy" / "hidemo-alerts.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_broken_rule_fails_the_rule_tests(tmp_path: Path) -> None:
    """The rule tests can fail: a rule whose window is wrong no longer fires as stated."""
    rule = "increase(hidemo_frames_lost_total[10m]) > "
    broken = (DEPLOY / "hidemo-alerts.yml").read_text().replace(rule + "0", rule + "5")
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "hidemo-alerts.yml").write_text(broken)
    (tmp_path / "tests" / "deploy").mkdir(parents=True)
    tests = tmp_path / "tests" / "deploy" / "hidemo-alerts.test.yml"
    tests.write_text((ROOT / "tests" / "deploy" / "hidemo-alerts.test.yml").read_text())
    result = promtool("test", "rules", str(tests))
    assert result.returncode != 0 and "HidemoFramesLost" in result.stdout + result.stderr


def test_the_example_run_configuration_validates() -> None:
    config = load_config(DEPLOY / "run.yaml")
    assert config.metrics.bind == "127.0.0.1:9109"
    assert config.sinks.mqtt is not None and config.sinks.mqtt.qos == 1


def test_the_systemd_unit_restarts_on_failure_and_runs_a_valid_command() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(DEPLOY / "hidemo.service")
    service = unit["Service"]
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"  # a refused start is not retried
    assert service["KillSignal"] == "SIGTERM"
    command = shlex.split(service["ExecStart"])
    assert Path(command[0]).name == "hidemo"
    args = build_parser().parse_args(command[1:])  # every option exists
    assert args.metrics_bind == "127.0.0.1:9109"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
