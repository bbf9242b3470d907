"""The annotator's loop over HTTP, signed in with a token as a script would be."""

import json

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from backend.accounts.roles import Role
from backend.batches.annotation_apis import AnnotationOutputSerializer, AssignmentDisplaySerializer
from backend.batches.models import Annotation, Focus
from backend.batches.selectors import assignment_for_display
from tests.factories import make_batch, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def token_client(annotator):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=annotator).key}")
    return client


def next_for(client, batch):
    return client.post(reverse("assignment-next", kwargs={"batch_id": batch.pk}))


def test_next_then_submit_then_nothing_left(token_client):
    batch = make_batch(comparisons=1)
    leased = next_for(token_client, batch)
    assert leased.status_code == 200
    body = leased.json()
    assert body["prompt"] and body["response_a"] and body["response_b"]
    url = reverse("assignment-submit", kwargs={"assignment_id": body["id"]})
    payload = {"choice": "a", "strength": "significantly_better", "idempotency_key": "abc", "time_spent_ms": 5400}
    created = token_client.post(url, payload, format="json")
    retried = token_client.post(url, payload, format="json")
    assert (created.status_code, retried.status_code) == (201, 200)
    assert created.json()["id"] == retried.json()["id"]
    assert Annotation.objects.get().time_spent_ms == 5400
    assert next_for(token_client, batch).status_code == 204


def test_annotators_never_see_model_identity(token_client):
    batch = make_batch(comparisons=1)
    checkpoint_names = list(batch.checkpoints.values_list("name", flat=True))
    texts = [
        next_for(token_client, batch).content.decode(),
        token_client.get(reverse("batch-detail", kwargs={"batch_id": batch.pk})).content.decode(),
        token_client.get(reverse("batch-list")).content.decode(),
    ]
    for text in texts:
        for secret in [*checkpoint_names, "temperature", "checkpoint", "first_response", "swap", "seed"]:
            assert secret not in text, f"{secret!r} leaked to an annotator: {text[:300]}"


def test_bad_input_is_a_400_that_names_the_field(token_client):
    batch = make_batch(comparisons=1, focus=Focus.SAFETY)
    assignment_id = next_for(token_client, batch).json()["id"]
    url = reverse("assignment-submit", kwargs={"assignment_id": assignment_id})
    missing = token_client.post(url, {"choice": "a"}, format="json")
    assert missing.status_code == 400 and {"strength", "idempotency_key"} <= set(missing.json())
    wrong = token_client.post(url, {"choice": "a", "strength": "best", "idempotency_key": "k"}, format="json")
    assert wrong.status_code == 400 and "strength" in wrong.json()
    unsafe = token_client.post(
        url,
        {"choice": "a", "strength": "better", "idempotency_key": "k", "safety_label": "chosen_unsafe_other_safe"},
        format="json",
    )
    assert unsafe.status_code == 400 and "safe response" in unsafe.json()["safety_label"][0]
    broken = token_client.post(url, "{not json", content_type="application/json")
    assert broken.status_code == 400
    typed = token_client.post(
        url,
        json.dumps({"choice": "a", "strength": "better", "idempotency_key": "k", "time_spent_ms": "soon"}),
        content_type="application/json",
    )
    assert typed.status_code == 400 and "time_spent_ms" in typed.json()
    for not_an_object in ("null", "[]", '"a"'):
        refused = token_client.post(url, not_an_object, content_type="application/json")
        assert refused.status_code == 400 and "non_field_errors" in refused.json(), not_an_object
    assert Annotation.objects.count() == 0


def test_replies_are_what_a_fresh_serializer_gives(token_client):
    """The loop's serializers are made once per process; a reply must not differ from a per-request one's."""
    batch = make_batch(comparisons=2)
    for _ in range(2):  # the second pass reuses the fields built by the first
        leased = next_for(token_client, batch).json()
        assert leased == dict(AssignmentDisplaySerializer(assignment_for_display(assignment_id=leased["id"])).data)
        url = reverse("assignment-submit", kwargs={"assignment_id": leased["id"]})
        payload = {"choice": "b", "strength": "better", "idempotency_key": f"k{leased['id']}"}
        stored = token_client.post(url, payload, format="json").json()
        annotation = Annotation.objects.select_related("comparison").get(pk=stored["id"])
        assert stored == dict(AnnotationOutputSerializer(annotation).data)


def test_submitting_twice_with_a_new_key_is_a_conflict(token_client):
    batch = make_batch(comparisons=1)
    url = reverse("assignment-submit", kwargs={"assignment_id": next_for(token_client, batch).json()["id"]})
    token_client.post(url, {"choice": "b", "strength": "better", "idempotency_key": "one"}, format="json")
    again = token_client.post(url, {"choice": "b", "strength": "better", "idempotency_key": "two"}, format="json")
    assert again.status_code == 409 and "already" in again.json()["detail"]


def test_skip_and_continue_over_http(token_client):
    batch = make_batch(comparisons=2)
    first = next_for(token_client, batch).json()
    skip = token_client.post(
        reverse("assignment-skip", kwargs={"assignment_id": first["id"]}),
        {"reason": "prompt_unusable", "idempotency_key": "s"},
        format="json",
    )
    assert skip.status_code == 201 and skip.json()["skip_reason"] == "prompt_unusable"
    second = next_for(token_client, batch).json()
    submitted = token_client.post(
        reverse("assignment-submit", kwargs={"assignment_id": second["id"]}),
        {"choice": "a", "strength": "better", "idempotency_key": "t"},
        format="json",
    ).json()
    continued = token_client.post(
        reverse("annotation-continue", kwargs={"annotation_id": submitted["id"]}),
        {"next_message": "Tell me more."},
        format="json",
    )
    assert continued.status_code == 201 and continued.json()["source"] == "dialogue"


def test_annotators_list_only_their_own_annotations(token_client, client_for):
    batch = make_batch(comparisons=2)
    other = client_for(make_user(Role.ANNOTATOR))
    for client, key in [(token_client, "mine"), (other, "theirs")]:
        assignment_id = next_for(client, batch).json()["id"]
        client.post(
            reverse("assignment-submit", kwargs={"assignment_id": assignment_id}),
            {"choice": "a", "strength": "better", "idempotency_key": key},
            format="json",
        )
    listed = token_client.get(reverse("annotation-list")).json()
    assert [row["idempotency_key"] for row in listed["results"]] == ["mine"]
    assert "annotator" not in listed["results"][0]


def test_someone_elses_assignment_is_a_404(token_client, client_for):
    batch = make_batch(comparisons=1)
    assignment_id = next_for(token_client, batch).json()["id"]
    intruder = client_for(make_user(Role.ANNOTATOR))
    assert intruder.get(reverse("assignment-detail", kwargs={"assignment_id": assignment_id})).status_code == 404
    submit = intruder.post(
        reverse("assignment-submit", kwargs={"assignment_id": assignment_id}),
        {"choice": "a", "strength": "better", "idempotency_key": "x"},
        format="json",
    )
    assert submit.status_code == 404


def test_nul_characters_are_a_400_not_a_500(token_client, client_for):
    batch = make_batch(comparisons=1)
    url = reverse("assignment-submit", kwargs={"assignment_id": next_for(token_client, batch).json()["id"]})
    response = token_client.post(
        url, {"choice": "a", "strength": "better", "idempotency_key": "n", "comment": "a\x00b"}, format="json"
    )
    assert response.status_code == 400 and "comment" in response.json()
    prompt = token_client.post(reverse("prompt-list"), {"text": "hi\x00there"}, format="json")
    assert prompt.status_code == 400 and "text" in prompt.json()
