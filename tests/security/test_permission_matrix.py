"""Every API endpoint x every role, generated from the URL configuration.

A new endpoint without a row in EXPECTED fails here, so nothing ships unchecked.
"""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from backend.accounts.roles import Role
from backend.batches.services.annotations import annotation_submit, assignment_lease_next
from tests.factories import make_batch, make_checkpoint, make_user

pytestmark = pytest.mark.django_db

ANON, ANNOTATOR, ADMIN, RESEARCHER = "anonymous", "annotator", "admin", "researcher"
EVERY_ROLE = {ANNOTATOR, ADMIN, RESEARCHER}
STAFF = {ADMIN, RESEARCHER}

# url name -> method -> roles that may call it (everyone else gets 401/403).
EXPECTED: dict[str, dict[str, set[str]]] = {
    "me": {"GET": EVERY_ROLE},
    "batch-list": {"GET": EVERY_ROLE, "POST": {ADMIN}},
    "batch-detail": {"GET": EVERY_ROLE},
    "batch-open": {"POST": {ADMIN}},
    "batch-close": {"POST": {ADMIN}},
    "batch-comparisons": {"GET": STAFF, "POST": {ADMIN}},
    "assignment-next": {"POST": {ANNOTATOR}},
    "assignment-detail": {"GET": {ANNOTATOR}},
    "assignment-submit": {"POST": {ANNOTATOR}},
    "assignment-skip": {"POST": {ANNOTATOR}},
    "annotation-list": {"GET": EVERY_ROLE},
    "annotation-continue": {"POST": {ANNOTATOR}},
    "prompt-list": {"GET": EVERY_ROLE, "POST": EVERY_ROLE},
    "checkpoint-list": {"GET": STAFF, "POST": STAFF},
    "checkpoint-detail": {"GET": STAFF},
    "batch-sample": {"POST": {ADMIN}},
    "live-pair-create": {"POST": {ANNOTATOR}},
    "live-pair-detail": {"GET": {ANNOTATOR}},
    "batch-statistics": {"GET": STAFF},
    "batch-gold": {"POST": {ADMIN}},
    "dashboard-overview-api": {"GET": STAFF},
    "dashboard-batch-api": {"GET": STAFF},
    "dashboard-annotator-api": {"GET": STAFF},
    "dashboard-models-api": {"GET": STAFF},
    "reward-scores": {"POST": STAFF},
    "lineage-api": {"GET": STAFF},
    "export-list": {"GET": {RESEARCHER}, "POST": {RESEARCHER}},
    "export-detail": {"GET": {RESEARCHER}},
    "export-file": {"GET": {RESEARCHER}},
    "prompt-import": {"POST": {ADMIN}},
    "preference-import": {"POST": {RESEARCHER}},
    "training-run-list": {"GET": STAFF, "POST": {RESEARCHER}},
    "training-run-detail": {"GET": STAFF},
    "audit-event-list": {"GET": STAFF},
    "iteration-list": {"GET": STAFF, "POST": {RESEARCHER}},
    "iteration-detail": {"GET": STAFF},
    "iteration-retry": {"POST": {RESEARCHER}},
    "iteration-report": {"GET": STAFF},
    "iteration-plot": {"GET": STAFF},
    "batch-template-list": {"GET": {ADMIN}, "POST": {ADMIN}},
    "batch-template-temperatures-from-scan": {"POST": {ADMIN}},
    "checkpoint-temperature-scans": {"GET": STAFF, "POST": {RESEARCHER}},
    "temperature-scan": {"GET": STAFF},
    "temperature-scan-plot": {"GET": STAFF},
}
# Public by design: obtaining a token, and the schema and its docs.
PUBLIC = {"auth-token", "schema", "docs", "redoc"}


def api_url_names() -> set[str]:
    resolver = get_resolver()
    names: set[str] = set()

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern) and (prefix + str(pattern.pattern)).startswith("api/v1/"):
                names.add(pattern.name)

    walk(resolver.url_patterns, "")
    return names


def test_every_api_endpoint_has_a_permission_row():
    assert api_url_names() == set(EXPECTED) | PUBLIC


@pytest.fixture
def world():
    """One object of each kind, each role's user; the annotator has a live lease and an annotation."""
    users = {
        ANNOTATOR: make_user(Role.ANNOTATOR),
        ADMIN: make_user(Role.ADMIN),
        RESEARCHER: make_user(Role.RESEARCHER),
    }
    batch = make_batch(comparisons=3)
    done = assignment_lease_next(batch=batch, annotator=users[ANNOTATOR])
    annotation, _ = annotation_submit(
        assignment_id=done.pk, annotator=users[ANNOTATOR], choice="a", strength="better", idempotency_key="w"
    )
    live = assignment_lease_next(batch=batch, annotator=users[ANNOTATOR])
    kwargs = {
        "batch_id": batch.pk,
        "assignment_id": live.pk,
        "annotation_id": annotation.pk,
        "checkpoint_id": make_checkpoint().pk,
        "live_pair_id": 1,
        "export_id": 1,
        "name": "train.jsonl",
        "run_id": 1,
        "iteration_id": 1,
        "annotator_id": users[ANNOTATOR].pk,
        "kind": "batches",
        "node_id": batch.pk,
        "scan_id": 1,
        "template_id": 1,
    }
    return users, kwargs


def url_for(name: str, kwargs: dict[str, int]) -> str:
    pattern = get_resolver().reverse_dict.getlist(name)[0][0][0][1]
    return reverse(name, kwargs={key: kwargs[key] for key in pattern})


@pytest.mark.parametrize("role", [ANON, ANNOTATOR, ADMIN, RESEARCHER])
def test_each_role_reaches_exactly_its_endpoints(world, client_for, role):
    users, kwargs = world
    client = client_for(users.get(role))
    for name, methods in EXPECTED.items():
        for method, allowed in methods.items():
            response = client.generic(method, url_for(name, kwargs), data="{}", content_type="application/json")
            refused = response.status_code in (401, 403)
            if role in allowed:
                assert not refused, f"{role} {method} {name}: {response.status_code} {response.content[:200]}"
                assert response.status_code < 500, f"{role} {method} {name}: {response.status_code}"
            else:
                expected = 401 if role == ANON else 403
                assert response.status_code == expected, f"{role} {method} {name}: {response.status_code}"
