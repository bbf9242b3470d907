"""The dashboards' figures on a small known dataset, and who may see the pages."""

import pytest

from backend.accounts.roles import Role
from backend.batches.models import Annotation
from backend.batches.services.annotations import annotation_submit, assignment_lease_next
from insights.selectors import annotator_dashboard, batch_dashboard
from loop.models import Iteration
from tests.factories import make_batch, make_checkpoint, make_user

pytestmark = pytest.mark.django_db


def judge(batch, annotator, *, pick_first, strength, key, time_ms=30_000):
    lease = assignment_lease_next(batch=batch, annotator=annotator)
    assert lease is not None
    first = "b" if lease.swap else "a"
    choice = first if pick_first else ("a" if first == "b" else "b")
    annotation_submit(
        assignment_id=lease.pk,
        annotator=annotator,
        choice=choice,
        strength=strength,
        idempotency_key=key,
        time_spent_ms=time_ms,
    )
    return lease


@pytest.fixture
def judged():
    """Two comparisons, each judged by two annotators: they agree on the first and disagree on the second."""
    batch = make_batch(comparisons=2, overlap=2)
    batch.gold_rate = 0
    batch.save(update_fields=["gold_rate"])
    ann, bob = make_user(), make_user()
    judge(batch, ann, pick_first=True, strength="better", key="1", time_ms=12_000)
    judge(batch, ann, pick_first=True, strength="slightly_better", key="2", time_ms=40_000)
    judge(batch, bob, pick_first=True, strength="better", key="3", time_ms=25_000)
    judge(batch, bob, pick_first=False, strength="slightly_better", key="4", time_ms=95_000)
    return batch, ann, bob


def test_batch_figures_on_a_known_dataset(judged):
    batch, _, _ = judged
    figures = batch_dashboard(batch_id=batch.pk)
    assert figures["progress"]["annotations"] == 4 and figures["progress"]["fraction_done"] == 1.0
    assert sum(h["count"] for h in figures["throughput_per_hour"]) == 4
    assert figures["time_on_task"]["median_s"] == pytest.approx(32.5)
    assert {s["strength"]: s["count"] for s in figures["strengths"]}["better"] == 2
    agreement = figures["agreement"]
    assert agreement["comparisons"] == 2 and agreement["choice_agreement"] == 0.5
    # Signed strengths per comparison (+first): (2.5, 2.5) and (1.5, -1.5). By hand: D_o = (0 + 2 * 3^2) / 4,
    # D_e = 2 * (4 * 17 - 5^2) / (4 * 3) = 86 / 12, so alpha = 1 - 4.5 * 12 / 86 = 16 / 43.
    assert agreement["alpha_signed_strength"] == pytest.approx(16 / 43)
    assert figures["leases"] == {"open": 0, "expired": 0}


def test_annotator_figures_position_bias_and_peers(judged):
    _, ann, _ = judged
    left = Annotation.objects.filter(annotator=ann, choice="a").count()
    figures = annotator_dashboard(annotator_id=ann.pk)
    assert figures["volume"]["judgements"] == 2
    assert figures["position_bias"]["successes"] == left and figures["position_bias"]["trials"] == 2
    assert figures["peer_agreement"] == {"pairs": 2, "rate": 0.5}


@pytest.mark.parametrize("role", [Role.ADMIN, Role.RESEARCHER, Role.ANNOTATOR])
def test_pages_render_for_staff_and_refuse_annotators(judged, client, role):
    batch, ann, _ = judged
    client.force_login(make_user(role))
    pages = [
        "/dashboards/",
        f"/dashboards/batches/{batch.pk}/",
        f"/dashboards/annotators/{ann.pk}/",
        "/dashboards/models/",
    ]
    for url in pages:
        response = client.get(url)
        if role == Role.ANNOTATOR:
            assert response.status_code == 403, url
        else:
            assert response.status_code == 200, url
            assert b"<svg" in response.content or url in ("/dashboards/", "/dashboards/models/")


def test_the_models_page_shows_each_iteration_with_its_progress(client):
    base = make_checkpoint("policy-base")
    running = Iteration.objects.create(
        base_policy=base, methods=["ppo"], status="running", step="policy", reward_builtin_backbone="all-minilm-l6-v2"
    )
    failed = Iteration.objects.create(
        base_policy=base,
        methods=["rejection_sampling"],
        status="failed",
        step="reward_models",
        error="ValueError: no pairs",
        reward_builtin_backbone="all-minilm-l6-v2",
    )
    client.force_login(make_user(Role.RESEARCHER))
    page = client.get("/dashboards/models/").content.decode()
    assert f'id="iteration-{running.pk}"' in page and f'id="iteration-{failed.pk}"' in page
    assert 'aria-valuenow="40"' in page  # export and reward models done: 5% + 35% of the way
    assert "ValueError: no pairs" in page
    assert f"/api/v1/iterations/{running.pk}/report/" in page
