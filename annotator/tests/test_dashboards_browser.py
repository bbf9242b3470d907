"""The dashboards (insights) in a real headless Chromium: what an admin sees on each page, with a screenshot.

Here beside the annotator's browser tests, for their fixtures: one Playwright, and one Chromium, per session.
"""

import pytest

from backend.accounts.roles import Role
from backend.batches.models import Annotation
from backend.batches.services.annotations import annotation_submit, assignment_lease_next
from tests.factories import make_batch, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def judge(batch, annotator, *, pick_first: bool, strength: str, key: str) -> None:
    lease = assignment_lease_next(batch=batch, annotator=annotator)
    assert lease is not None
    first_shown = "b" if lease.swap else "a"
    choice = first_shown if pick_first else ("a" if first_shown == "b" else "b")
    annotation_submit(
        assignment_id=lease.pk,
        annotator=annotator,
        choice=choice,
        strength=strength,
        idempotency_key=key,
        time_spent_ms=20_000,
    )


@pytest.fixture
def judged(db):
    """Two comparisons judged by two annotators, who agree on the first and disagree on the second."""
    batch = make_batch(comparisons=2, overlap=2)
    batch.gold_rate = 0
    batch.save(update_fields=["gold_rate"])
    ann, bob = make_user(username="ann"), make_user(username="bob")
    judge(batch, ann, pick_first=True, strength="better", key="1")
    judge(batch, ann, pick_first=True, strength="slightly_better", key="2")
    judge(batch, bob, pick_first=True, strength="better", key="3")
    judge(batch, bob, pick_first=False, strength="slightly_better", key="4")
    make_user(Role.ADMIN, username="boss", password="a-long-password")
    return batch, ann


def section(page, heading: str):
    """The dashboard card under this heading."""
    return page.locator("section.card", has=page.locator("h2", has_text=heading))


def test_an_admin_walks_through_every_dashboard(page, live_server, sign_in, screenshot, judged):
    batch, ann = judged
    sign_in(page, "boss")

    page.goto(f"{live_server.url}/dashboards/")
    batches = section(page, "Batches")
    assert batches.locator("tr", has_text=batch.name).locator("progress").get_attribute("value") == "1.000"
    assert section(page, "Annotators").locator("a", has_text="ann").is_visible()
    screenshot(page, "dashboard-index")

    batches.locator("a", has_text=batch.name).click()
    page.wait_for_url(f"{live_server.url}/dashboards/batches/{batch.pk}/")
    assert page.inner_text("#progress-figure") == "4 / 4"
    assert section(page, "Strength").locator("svg.chart rect.bar").count() >= 2
    assert section(page, "Throughput").locator("svg.chart").is_visible()
    # Krippendorff's alpha on the signed strengths of the known judgements: 16/43.
    assert page.inner_text("#alpha") == "0.372" and page.inner_text("#choice-agreement") == "0.500"
    screenshot(page, "dashboard-batch")

    page.goto(f"{live_server.url}/dashboards/")
    section(page, "Annotators").locator("a", has_text="ann").click()
    page.wait_for_url(f"{live_server.url}/dashboards/annotators/{ann.pk}/")
    left = Annotation.objects.filter(annotator=ann, choice="a").count()
    assert page.inner_text("#left-rate") == f"{left / 2:.3f}"
    assert "of 2 times" in section(page, "Quality").inner_text()
    assert section(page, "Volume").locator("svg.chart").is_visible()
    screenshot(page, "dashboard-annotator")

    page.click("nav.dash-nav >> text=Models")
    page.wait_for_url(f"{live_server.url}/dashboards/models/")
    board = section(page, "Leaderboard")
    for checkpoint in batch.checkpoints.all():
        row = board.locator("tr", has_text=checkpoint.name)
        assert row.locator("svg rect").count() == 1, checkpoint.name
    assert section(page, "training runs").inner_text().endswith("No training runs yet.")
    screenshot(page, "dashboard-models")
