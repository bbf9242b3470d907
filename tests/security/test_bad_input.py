"""Oversized and malformed request bodies get a JSON 4xx with a message from the API, never an HTML page."""

import json

import pytest
from django.conf import settings

from tests.factories import make_batch

pytestmark = pytest.mark.django_db


@pytest.fixture
def submit_url(client_for, annotator):
    batch = make_batch(comparisons=1)
    assignment = client_for(annotator).post(f"/api/v1/batches/{batch.pk}/next/").json()
    return f"/api/v1/assignments/{assignment['id']}/submit/"


def assert_json_refusal(response, status_codes: tuple[int, ...]) -> dict:
    assert response.status_code in status_codes, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response.content[:300]
    body = response.json()
    assert body["detail"]
    return body


def test_an_oversized_json_body_is_a_413_with_a_message(client_for, annotator, submit_url):
    padding = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    body = json.dumps({"choice": "a", "strength": "better", "idempotency_key": "k", "comment": padding})
    response = client_for(annotator).post(submit_url, body, content_type="application/json")
    assert "too large" in assert_json_refusal(response, (413,))["detail"]


def test_an_oversized_form_body_is_a_413_with_a_message(client_for, batch_admin):
    form = {"name": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1), "target_comparisons": "1"}
    response = client_for(batch_admin).post("/api/v1/batches/", form, format="multipart")
    assert_json_refusal(response, (413,))


@pytest.mark.parametrize("body", ["{not json", '{"choice": "a",', "\xff\xfe", "[1, 2", '"just a string"', "[]"])
def test_malformed_json_is_a_400_with_a_message(client_for, annotator, submit_url, body):
    response = client_for(annotator).post(submit_url, body.encode("latin-1"), content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    assert response.json()
