"""`drip campaigns lint` on the shipped sequence, and on copies broken one rule at a time."""

import shutil

import pytest
from click.testing import CliRunner

from campaigns.content.lint import LintContext, lint_folder
from settings import ROOT, Settings
from workers.cli import main

BASE = "https://care.example"


@pytest.fixture
def copy(tmp_path):
    """A private copy of the shipped campaign to break."""
    shutil.copytree(ROOT / "campaigns" / "definitions", tmp_path / "definitions")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    return tmp_path


def errors(folder):
    ctx = LintContext(folder / "templates", BASE, "Lunara", "1 Main Street, Springfield")
    return [str(f) for f in lint_folder(folder / "definitions", ctx) if f.severity == "error"]


def edit(path, old, new):
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_shipped_campaigns_pass_in_both_languages():
    # Every setting unset, as in a fresh shell: the shipped campaigns and templates.
    unset = {name.upper(): None for name in Settings.model_fields}
    result = CliRunner().invoke(main, ["campaigns", "lint"], env=unset)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "0 error(s)" in result.stdout
    for locale in ("en", "es"):
        assert f"step welcome sms {locale}: " in result.stdout  # both locales were checked


def test_shipped_copy_is_clean(copy):
    assert errors(copy) == []


def test_curly_apostrophe_in_sms(copy):
    sms = copy / "templates/hip_and_back/en/welcome.sms.txt"
    sms.write_text(sms.read_text().replace("Welcome", "Welcome, it’s", 1))
    assert any(
        "step welcome sms (text only) en" in e and "outside GSM-7" in e and "’" in e
        for e in errors(copy)
    )


def test_three_segment_text(copy):
    sms = copy / "templates/hip_and_back/en/back_pain.sms.txt"
    sms.write_text("Long lesson. " * 20 + "{{ links.read_online }}")
    assert any("step back_pain sms en" in e and "3 segments" in e for e in errors(copy))


def test_a_literal_emergency_number_is_refused(copy):
    edit(copy / "templates/_layout/en/email.txt", "{{ emergency_number }}", "911")
    found = errors(copy)
    # A reader in Spain or Australia would be told 911.
    assert any(
        "email en" in e and "no emergency number for a reader in ES (112)" in e for e in found
    ), found
    edit(copy / "templates/hip_and_back/en/hip_pain.sms.txt", "Read more", "Or call 911. Read more")
    found = errors(copy)
    assert any(
        "step hip_pain sms (text only) en" in e and "a reader in ES is told 911" in e for e in found
    ), found


def test_text_with_the_warning_signs_may_take_four_segments_not_five(copy):
    sms = copy / "templates/hip_and_back/en/diagnosis.sms.txt"
    assert errors(copy) == []  # 3 to 4 segments with the warning signs: allowed
    sms.write_text(
        sms.read_text().replace("{% if text_only %}", "{% if text_only %}" + "Long. " * 20, 1)
    )
    assert any(
        "step diagnosis sms (text only) en" in e and "5 segments" in e and "at most 4" in e
        for e in errors(copy)
    )


def test_the_first_text_must_say_what_texts_cost(copy):
    edit(copy / "templates/_layout/es/sms.txt", " Pueden aplicarse tarifas de msj y datos.", "")
    found = errors(copy)
    assert any("step welcome sms es" in e and "rates may apply" in e for e in found), found


def test_grade_twelve_paragraph(copy):
    txt = copy / "templates/hip_and_back/en/hip_pain.txt"
    txt.write_text(
        "Musculoskeletal dysfunction frequently originates from degenerative intervertebral "
        "pathophysiology, necessitating comprehensive multidisciplinary evaluation. " * 5
    )
    found = errors(copy)
    assert any("step hip_pain email en" in e and "too hard" in e for e in found), found


def test_missing_unsubscribe_link(copy):
    edit(copy / "templates/_layout/es/email.html", "{{ links.unsubscribe }}", "#")
    found = errors(copy)
    assert any("email es" in e and "HTML part is missing the unsubscribe link" in e for e in found)
    assert not any("email en" in e and "unsubscribe" in e for e in found)


def test_undefined_variable(copy):
    edit(
        copy / "templates/hip_and_back/es/diagnosis.html",
        "</h1>",
        "</h1><p>{{ diagnosis_date }}</p>",
    )
    assert any(
        "step diagnosis email es" in e and "'diagnosis_date' is undefined" in e
        for e in errors(copy)
    )


def test_template_reaching_python_internals_is_refused(copy):
    edit(
        copy / "templates/hip_and_back/en/treatment.html",
        "</h1>",
        "</h1>{{ links.__class__.__mro__[1].__subclasses__() }}",
    )
    found = errors(copy)
    assert any("step treatment email en" in e and "__class__" in e for e in found), found


def test_condition_in_subject_and_diagnosing_the_reader(copy):
    edit(
        copy / "definitions/hip_and_back.yaml",
        'en: "Welcome to your four-week course"',
        'en: "Welcome! Help for your sciatica"',
    )
    edit(copy / "templates/hip_and_back/es/treatment.txt", "\n", "\nTienes artrosis.\n")
    found = errors(copy)
    assert any(
        "step welcome email en" in e and "subject names a condition ('sciatica')" in e
        for e in found
    )
    assert any(
        "step treatment email es" in e and "tells the reader what they have" in e for e in found
    )


def test_link_to_somewhere_else(copy):
    # A page on the web reaches the reader through our signed redirect (/l/...), so it is
    # one of our routes once rendered; a link the redirect does not carry is not.
    edit(
        copy / "templates/hip_and_back/en/prevention.html",
        "</h1>",
        '</h1><p><a href="https://nhs.example/x">x</a> <a href="ftp://files.example/x">y</a></p>',
    )
    found = errors(copy)
    assert not any("nhs.example" in e for e in found)
    assert any("ftp://files.example/x does not lead to one of our routes" in e for e in found)
