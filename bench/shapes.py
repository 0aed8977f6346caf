"""A lesson filled in from its shape (campaigns.content.shapes) against the full render, as
the "read online" page and the click redirect need them, side by side in one run.

    .venv/bin/python bench/shapes.py [--messages 2000] [--rounds 5]

Every shipped lesson (campaign, step, variant, locale), each call for a different message
(its own signed links) and a different person (names drawn from a list), as in a click
storm, where no per-message cache helps. Four pairs, each timed over the same calls:
the online page's html (`renderer.email(...).html` against `Shapes.email_html`), and the
click's link targets for an email (texts=False) and for a text (texts=True)
(`redirects.targets_in` against `Shapes.targets`). The shapes are built before timing (a
process builds each once per TTL); what one costs to build is printed too. Rounds
alternate full and shape runs; printed: the median per call, and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from campaigns.content.rendering import Recipient, Renderer, Sender
from campaigns.content.shapes import Shapes
from campaigns.links import Signer, links_for
from campaigns.sequences.registry import Registry
from campaigns.tracking.portal import online_links
from campaigns.tracking.redirects import targets_in

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["Bob", "Ana María", "Wei", "", None, "Ngozi", "Siobhán", "Jo"]


def calls(n: int) -> list[tuple]:
    registry = Registry(ROOT / "campaigns" / "definitions", ROOT / "templates")
    lessons = [
        (campaign, version, locale)
        for campaign in registry.campaigns().values()
        for step in campaign.steps
        for version in step.versions
        for locale in campaign.locales
    ]
    signer = Signer(b"bench-secret-bench-secret-bench!")
    out = []
    for i in range(n):
        campaign, step, locale = lessons[i % len(lessons)]
        links = links_for("https://care.example.org", signer, f"m{i:08d}", step.answer_values)
        recipient = Recipient(NAMES[i % len(NAMES)], locale, ("US", "GB", "ES")[i % 3])
        out.append((campaign, step, recipient, links))
    return out


def timed(fn, work) -> float:
    start = time.perf_counter()
    for args in work:
        fn(*args)
    return (time.perf_counter() - start) / len(work)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    renderer = Renderer(ROOT / "templates", Sender("Lunara", "1 Main Street, Springfield"))
    shapes = Shapes(renderer)
    work = calls(args.messages)
    online = [(c, s, r, online_links(lk)) for c, s, r, lk in work]

    pairs = {
        "online page html": (
            lambda c, s, r, lk: renderer.email(c, s, r, lk).html,
            shapes.email_html,
            online,
        ),
        "targets, email click": (
            lambda c, s, r, lk: targets_in(renderer, c, s, r, lk, texts=False),
            lambda c, s, r, lk: shapes.targets(c, s, r, lk, texts=False),
            work,
        ),
        "targets, text click": (
            lambda c, s, r, lk: targets_in(renderer, c, s, r, lk, texts=True),
            lambda c, s, r, lk: shapes.targets(c, s, r, lk, texts=True),
            work,
        ),
    }
    start = time.perf_counter()
    for _, shape, todo in pairs.values():
        for one in todo:
            shape(*one)  # builds every shape once
    built = len(shapes)
    print(f"{built} shapes built in {time.perf_counter() - start:.2f} s (with their first fills)")
    shaped = sum(shapes.shapeable(*one, texts=True) for one in work)
    print(f"calls a shape serves: {shaped}/{len(work)}")

    print(f"{'per call, median of ' + str(args.rounds) + ' rounds':34} {'full':>10} {'shape':>10}")
    for label, (full, shape, todo) in pairs.items():
        f, s = [], []
        for _ in range(args.rounds):
            f.append(timed(full, todo))
            s.append(timed(shape, todo))
        fm, sm = statistics.median(f), statistics.median(s)
        print(f"{label:34} {fm * 1e6:8.1f} µs {sm * 1e6:8.1f} µs   full/shape = {fm / sm:5.1f}x")


if __name__ == "__main__":
    main()
