"""Sequence files: precise errors, and nothing enrolled from a broken folder."""

import shutil
from pathlib import Path

import pytest

from campaigns.sequences.campaign import DefinitionError, parse_delay
from campaigns.sequences.registry import Registry, load_all
from tests.conftest import FIXTURES


def write(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(body)
    return path


@pytest.fixture
def defs(tmp_path):
    folder = tmp_path / "definitions"
    shutil.copytree(FIXTURES / "definitions", folder)
    return folder


def problems(defs):
    with pytest.raises(DefinitionError) as info:
        load_all(defs, FIXTURES / "templates")
    return info.value.problems


def test_fixture_campaign_loads(defs):
    tiny = load_all(defs, FIXTURES / "templates")["tiny"]
    assert [s.key for s in tiny.steps] == ["hello", "second", "third"]
    assert tiny.steps[1].delay.days == 1


def test_negative_delay_names_file_step_and_field(defs):
    text = (defs / "tiny.yaml").read_text().replace("delay: 1d", "delay: -2d")
    (defs / "tiny.yaml").write_text(text)
    assert problems(defs) == ["tiny.yaml: step 2 (second) field delay: delay must not be negative"]


def test_unknown_template(defs):
    text = (defs / "tiny.yaml").read_text().replace("template: second", "template: nope")
    (defs / "tiny.yaml").write_text(text)
    found = problems(defs)
    assert any(
        "step 2 (second) field template: unknown template" in p and "nope.html" in p for p in found
    )


def test_malformed_yaml(defs):
    write(defs, "broken.yaml", "key: broken\nsteps: [\n")
    found = problems(defs)
    assert len(found) == 1 and found[0].startswith("broken.yaml: not valid YAML")


def test_missing_and_unknown_fields(defs):
    write(
        defs,
        "odd.yaml",
        "key: odd\nversion: 1\nname: Odd\ncolour: red\nsteps:\n"
        "  - {key: a, delay: 0m, channels: [fax], template: hello}\n",
    )
    found = problems(defs)
    assert "odd.yaml: field colour: Extra inputs are not permitted" in found
    assert any(p.startswith("odd.yaml: step 1 (a) field channels.0:") for p in found)


def test_email_step_needs_subject(defs):
    text = (defs / "tiny.yaml").read_text().replace('    subject: "Lesson two"\n', "")
    (defs / "tiny.yaml").write_text(text)
    assert any("step 2 (second)" in p and "needs a subject" in p for p in problems(defs))


def test_key_must_match_file_name(defs):
    shutil.copy(defs / "tiny.yaml", defs / "other.yaml")
    assert any("other.yaml: field key" in p for p in problems(defs))


@pytest.mark.parametrize(
    "text,minutes", [("0m", 0), ("30m", 30), ("12h", 720), ("3d", 4320), ("1w 2d", 12960), (15, 15)]
)
def test_delay_forms(text, minutes):
    assert parse_delay(text).total_seconds() == minutes * 60


@pytest.mark.parametrize("bad", ["-1d", "soon", "", "3 days", True])
def test_bad_delays(bad):
    with pytest.raises(ValueError):
        parse_delay(bad)


def test_registry_reloads_after_edit(defs):
    reg = Registry(defs, FIXTURES / "templates")
    assert reg.get("tiny").name == "Tiny test course"
    import os
    import time

    text = (defs / "tiny.yaml").read_text().replace("Tiny test course", "Renamed")
    (defs / "tiny.yaml").write_text(text)
    os.utime(defs / "tiny.yaml", ns=(time.time_ns() + 10**9,) * 2)
    assert reg.get("tiny").name == "Renamed"
