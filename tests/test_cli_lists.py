"""Every `drip` command that lists things, on SQLite and PostgreSQL: it says so when there
is nothing to list, and refuses a value it does not know (exit 2, naming the option)
instead of listing nothing as if the value were fine."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tests.helpers import drip_context
from workers.cli import main


@pytest.fixture
def drip(factory, clock):
    def run(*args: str):
        return CliRunner().invoke(main, list(args), obj=drip_context(factory, clock))

    return run


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["outbox", "list"], "no unconfirmed messages"),
        (["outbox", "list", "--status", "sent"], "no sent messages"),
        (["contacts"], "nobody is waiting"),
        (["contacts", "list", "--status", "closed"], "no contact request matches these filters"),
        (["inbox"], "Nothing waits."),
        (["people", "find", "zoe"], "Nobody matches 'zoe'."),
        (["users", "list"], "no staff accounts (drip users add NAME --role ROLE)"),
        (["api-keys", "list"], "no API keys (drip api-keys create NAME)"),
        (["audit"], "no audit entries"),
        (["audit", "--actor", "nina"], "no audit entries match"),
        (["campaigns", "history", "tiny"], "tiny: no revisions yet"),
        (["channels", "list"], "no channel is paused"),
    ],
)
def test_an_empty_list_says_so(drip, args, says):
    result = drip(*args)
    assert result.exit_code == 0, result.output
    assert says in result.output


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["outbox", "list", "--status", "bogus"], "'--status': 'bogus' is not one of"),
        (["outbox", "list", "--limit", "0"], "'--limit'"),
        (["contacts", "list", "--status", "pending"], "'--status'"),
        (["contacts", "list", "--channel", "fax"], "'--channel'"),
        (["people", "find", "zoe", "--page", "0"], "'--page'"),
        (["users", "add", "kim", "--role", "boss"], "'--role'"),
        (["audit", "--since", "yesterday"], "--since"),
        (["audit", "--limit", "0"], "'--limit'"),
        (["campaigns", "history", "nope"], "no campaign 'nope' (known: "),
        (["channels", "pause", "fax", "--reason", "x"], "'fax' is not one of"),
        (["worker", "--loglevel", "loud"], "'--loglevel'"),
        (["worker", "--hostname", " "], "'--hostname': must not be empty"),
        (["beat", "-l", "loud"], "'--loglevel'"),
        (["health", "worker", "--timeout", "0"], "'--timeout'"),
        (["health", "beat", "--max-age", "soon"], "'--max-age'"),
        (["health", "web"], "No such command 'web'"),
    ],
)
def test_an_unknown_value_is_refused_with_its_name(drip, args, names):
    result = drip(*args)
    assert result.exit_code == 2, result.output
    assert names in result.output
    assert "Traceback" not in result.output


def test_unknown_campaigns_in_reports_and_experiments_are_an_error(drip):
    result = drip("report", "nope")
    assert result.exit_code == 1 and "nope" in result.output
    result = drip("campaigns", "promote", "nope", "hello", "a")
    assert result.exit_code == 1 and "no campaign 'nope'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_channels_alone_lists_each_channel_with_its_state(drip):
    alone = drip("channels")
    assert alone.exit_code == 0, alone.output
    assert alone.output.splitlines() == ["email: sending", "sms: sending", "no channel is paused"]
    assert drip("channels", "pause", "sms", "--reason", "twilio outage").exit_code == 0
    lines = drip("channels").output.splitlines()
    assert lines[0] == "email: sending"
    assert lines[1].startswith("sms: paused since ") and lines[1].endswith(": twilio outage")
    assert len(lines) == 2
    assert drip("channels", "list").output.splitlines() == lines
