"""Annotators never receive model identity: every response an annotator can reach is scanned for it.

The batch is sampled from checkpoints with distinctive names at distinctive temperatures and seeds, so
any leak of provenance (name, path, temperature, seed, which side came from which model) shows up.
"""

import json

import pytest
from django.test import Client

from backend.batches.services.batches import batch_create, batch_open
from backend.batches.services.comparisons import ResponseInput, comparison_create
from backend.checkpoints.services import checkpoint_register
from tests.factories import make_prompt

pytestmark = pytest.mark.django_db

NAMES = ("llama-secret-alpha-7b", "llama-secret-beta-7b")
TEMPERATURES = (0.613, 1.387)
SEED = 918273
SECRETS = [*NAMES, "/models/secret", "0.613", "1.387", str(SEED), "temperature", "checkpoint", "first_response"]


@pytest.fixture
def batch():
    alpha, beta = (checkpoint_register(name=name, path=f"/models/secret/{name}")[0] for name in NAMES)
    batch, _ = batch_create(
        name="identity-scan",
        target_comparisons=3,
        created_by=None,
        checkpoint_ids=[alpha.pk, beta.pk],
        temperatures=list(TEMPERATURES),
    )
    for number in range(3):
        comparison_create(
            batch=batch,
            prompt=make_prompt(f"Question {number}?"),
            first=ResponseInput(checkpoint=alpha, text=f"alpha says {number}", temperature=TEMPERATURES[0], seed=SEED),
            second=ResponseInput(checkpoint=beta, text=f"beta says {number}", temperature=TEMPERATURES[1], seed=SEED),
        )
    return batch_open(batch=batch)


def assert_no_identity(label: str, content: bytes) -> None:
    text = content.decode()
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked to an annotator in {label}: {text[:400]}"


def test_nothing_an_annotator_reaches_names_the_models(batch, annotator):
    browser = Client()
    browser.force_login(annotator)
    api = "/api/v1"
    seen: list[tuple[str, bytes]] = []

    def visit(method: str, url: str, data: dict | None = None) -> dict:
        response = browser.generic(method, url, data=json.dumps(data or {}), content_type="application/json")
        assert response.status_code < 400, (url, response.status_code, response.content[:300])
        seen.append((f"{method} {url}", response.content))
        return response.json() if response["Content-Type"].startswith("application/json") else {}

    leased = visit("POST", f"{api}/batches/{batch.pk}/next/")
    visit("GET", f"{api}/assignments/{leased['id']}/")
    submitted = {"choice": "b", "strength": "better", "idempotency_key": "scan-1"}
    visit("POST", f"{api}/assignments/{leased['id']}/submit/", submitted)
    skipped = visit("POST", f"{api}/batches/{batch.pk}/next/")
    visit("POST", f"{api}/assignments/{skipped['id']}/skip/", {"reason": "identical", "idempotency_key": "scan-2"})
    third = visit("POST", f"{api}/batches/{batch.pk}/next/")
    for url in [
        "/me/",
        "/batches/",
        f"/batches/{batch.pk}/",
        "/annotations/",
        "/prompts/",
    ]:
        visit("GET", api + url)
    for page in ["/", f"/work/batches/{batch.pk}/", f"/work/assignments/{third['id']}/"]:
        visit("GET", page)

    assert len(seen) == 14
    for label, content in seen:
        assert_no_identity(label, content)
