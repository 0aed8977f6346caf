"""The production-shaped stack file (no Docker engine here, so it is read, not run)."""

import yaml
from click.testing import CliRunner

from settings import ROOT, Settings
from workers.cli import main


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_stack_has_every_part_and_one_scheduler():
    services = compose()["services"]
    assert {"postgres", "redis", "migrate", "web", "worker", "beat", "flower"} <= set(services)
    assert services["beat"]["deploy"]["replicas"] == 1
    assert "127.0.0.1:" in services["flower"]["ports"][0]  # never published to the world
    assert any("--basic-auth" in part for part in services["flower"]["command"])


def test_every_drip_command_in_the_stack_exists():
    runner = CliRunner()
    for name, service in compose()["services"].items():
        command = service.get("command") or []
        if command[:1] == ["drip"]:
            result = runner.invoke(main, [*command[1:2], "--help"])
            assert result.exit_code == 0, (name, result.output)


def test_app_environment_names_real_settings():
    env = compose()["x-app"]["environment"]
    fields = {f.upper() for f in Settings.model_fields}
    assert set(env) <= fields, set(env) - fields
    for needed in (
        "TWILIO_FROM_NUMBER",
        "TWILIO_MESSAGING_SERVICE_SID",
        "SENDGRID_WEBHOOK_PUBLIC_KEY",
    ):
        assert needed in env
