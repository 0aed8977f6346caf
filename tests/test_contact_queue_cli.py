"""`drip contacts list | assign | unassign | note` on the same requests as the web tests,
on SQLite and PostgreSQL: filters, the response target, refusals, and the audit log."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select

from campaigns.care.contact_notes import NOTE_MAX
from campaigns.models import ContactRequest, ContactRequestNote
from tests.helpers import drip_context
from tests.test_contact_queue_web import audit_since, last_audit_id, requests  # noqa: F401
from workers.cli import main


def drip(factory, clock, *args: str):
    return CliRunner().invoke(main, ["contacts", *args], obj=drip_context(factory, clock))


def ids(output: str) -> list[int]:
    body = output.split("\n")[2:]  # under the header and its rule
    return [int(line.split()[0]) for line in body if line[:1].isdigit()]


def test_list_filters_and_judges_the_wait(factory, clock, requests):  # noqa: F811
    r = requests
    listed = drip(factory, clock, "list")
    assert listed.exit_code == 0, listed.output
    assert ids(listed.output) == [r.ana, r.ben, r.cy, r.dee]
    ana = next(line for line in listed.output.splitlines() if line.startswith(str(r.ana)))
    ben = next(line for line in listed.output.splitlines() if line.startswith(str(r.ben)))
    assert "OVERDUE" in ana and "due soon" in ben
    assert "+12025550143" not in listed.output and "masked" in listed.output
    assert "+12025550143" in drip(factory, clock, "list", "--reveal").output
    assert ids(drip(factory, clock, "list", "--status", "closed").output) == [r.ana_before]
    assert ids(drip(factory, clock, "list", "--overdue").output) == [r.ana]
    assert ids(drip(factory, clock, "list", "--channel", "phone").output) == [r.ana, r.dee]
    empty = drip(factory, clock, "list", "--overdue", "--channel", "sms")
    assert empty.exit_code == 0 and "no contact request matches these filters" in empty.output
    # the bare command still lists what waits
    assert ids(drip(factory, clock).output) == [r.ana, r.ben, r.cy, r.dee]


def test_unknown_values_are_refused(factory, clock, requests):  # noqa: F811
    for args in (
        ["list", "--status", "pending"],
        ["list", "--channel", "fax"],
        ["list", "--assignee", "a" * 81],
        ["list", "--page", "0"],
        ["list", "--page", "two"],
        ["--reveal", "list"],
    ):
        refused = drip(factory, clock, *args)
        assert refused.exit_code == 2, (args, refused.output)


def test_assign_and_note_are_audited_as_the_cli(factory, clock, requests):  # noqa: F811
    first = last_audit_id(factory)
    done = drip(factory, clock, "assign", str(requests.ben), "Maria Lopez", "--by", "kim")
    assert done.exit_code == 0 and "with Maria Lopez" in done.output
    assert ids(drip(factory, clock, "list", "--assignee", "Maria Lopez").output) == [requests.ben]
    assert ids(drip(factory, clock, "list", "--assignee", "unassigned").output) == [
        requests.ana,
        requests.cy,
        requests.dee,
    ]
    noted = drip(factory, clock, "note", str(requests.ben), "emailed the leaflet", "--by", "kim")
    assert noted.exit_code == 0 and "note" in noted.output
    assert drip(factory, clock, "unassign", str(requests.ben), "--by", "kim").exit_code == 0
    marked = drip(factory, clock, "--mark", str(requests.ben), "--as", "contacted", "--by", "kim")
    assert marked.exit_code == 0, marked.output
    entries = audit_since(factory, first)
    assert [(e.actor, e.origin, e.action) for e in entries] == [
        ("cli:kim", "cli", "contact_request.assign"),
        ("cli:kim", "cli", "contact_request.note"),
        ("cli:kim", "cli", "contact_request.unassign"),
        ("cli:kim", "cli", "contact_request.status"),
    ]
    with factory() as s:
        (note,) = s.scalars(select(ContactRequestNote)).all()
        assert (note.author, note.body) == ("cli:kim", "emailed the leaflet")
        req = s.get(ContactRequest, requests.ben)
        assert (req.status, req.assigned_to) == ("contacted", None)


def test_bad_ids_and_notes_change_nothing(factory, clock, requests):  # noqa: F811
    first = last_audit_id(factory)
    for args, said in (
        (["assign", "99999", "kim"], "no contact request 99999"),
        (["assign", "abc", "kim"], "must be a whole number"),
        (["assign", str(requests.cy), " "], "give the assignee"),
        (["note", str(requests.cy), "x" * (NOTE_MAX + 1)], f"at most {NOTE_MAX}"),
        (["note", str(requests.cy), ""], "the note is empty"),
        (["unassign", str(2**40)], "no contact request"),
    ):
        refused = drip(factory, clock, *args)
        assert refused.exit_code == 1 and said in refused.output, (args, refused.output)
    assert audit_since(factory, first) == []
    with factory() as s:
        assert s.scalars(select(ContactRequestNote)).all() == []
