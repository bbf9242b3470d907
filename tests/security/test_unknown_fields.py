"""A field an endpoint does not know is a 400 that names it, never dropped in silence (issue 17).

DRF serializers drop unknown fields, so `"batches": [2]` beside an export's `filters` (rather than inside them) used
to answer 202 and export every batch. Every write operation of the OpenAPI schema is walked here: a body that looks
valid plus `batches_typo_zz`, posted as each role that may call it, must be a 400 whose body names the field.
"""

import json
import re
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from drf_spectacular.generators import SchemaGenerator
from rest_framework import serializers
from rest_framework.test import APIClient

from backend.accounts.roles import Role
from backend.api import StrictSerializer, refuse_input, shared_validation
from backend.batches.services.annotations import annotation_submit, assignment_lease_next
from exports.models import ExportRun
from tests.factories import make_batch, make_checkpoint, make_user

pytestmark = pytest.mark.django_db

UNKNOWN = "batches_typo_zz"
WRITE_METHODS = ("post", "put", "patch")
ROLES = (None, Role.ANNOTATOR, Role.ADMIN, Role.RESEARCHER)  # None: anonymous (the token exchange)


def write_operations() -> list[tuple[str, str, dict[str, Any]]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = [
        (path, method, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
        if method in WRITE_METHODS
    ]
    return sorted(operations, key=lambda entry: (entry[0], entry[1]))


def resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema or "allOf" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema["allOf"][0]
    return schema


def example(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    """A value that looks valid for `schema`: its first choice, its minimum, one item when items are required."""
    schema = resolve(schema, components)
    if "enum" in schema:
        return next(value for value in schema["enum"] if value not in ("", None))
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        return {name: example(schema["properties"][name], components) for name in schema.get("required", [])}
    if kind == "array":
        return [example(schema.get("items", {}), components)] if schema.get("minItems") else []
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return schema.get("minimum", 0.5)
    if kind == "boolean":
        return False
    if kind == "string" and schema.get("format") == "date-time":
        return "2030-01-01T00:00:00Z"
    if kind == "string" and schema.get("format") == "binary":
        return SimpleUploadedFile("upload.jsonl", b'{"text": "hello"}\n')
    if kind == "string":
        return "x"
    return {}


def request_for(operation: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """The client's keyword arguments: a JSON body where the operation takes JSON, else a multipart form."""
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        body = example(content["application/json"]["schema"], components)
        return {"data": json.dumps({**body, UNKNOWN: 1}), "content_type": "application/json"}
    if "multipart/form-data" in content:
        form = example(content["multipart/form-data"]["schema"], components)
        form = {key: str(value).lower() if isinstance(value, bool) else value for key, value in form.items()}
        return {"data": {**form, UNKNOWN: "1"}, "format": "multipart"}
    # No body in the schema (open, close, next, sample, retry): any field is unknown.
    return {"data": json.dumps({UNKNOWN: 1}), "content_type": "application/json"}


@pytest.fixture
def world():
    """A user per role and one object of each kind the paths name; the annotator has a lease and an annotation."""
    users = {role: make_user(role) for role in Role}
    batch = make_batch(comparisons=3)
    done = assignment_lease_next(batch=batch, annotator=users[Role.ANNOTATOR])
    annotation, _ = annotation_submit(
        assignment_id=done.pk, annotator=users[Role.ANNOTATOR], choice="a", strength="better", idempotency_key="w"
    )
    live = assignment_lease_next(batch=batch, annotator=users[Role.ANNOTATOR])
    ids = {
        "batch_id": batch.pk,
        "assignment_id": live.pk,
        "annotation_id": annotation.pk,
        "checkpoint_id": make_checkpoint().pk,
        "live_pair_id": 1,
        "export_id": 1,
        "run_id": 1,
        "iteration_id": 1,
        "annotator_id": users[Role.ANNOTATOR].pk,
    }
    return users, ids


def client(users: dict[Role, Any], role: Role | None) -> APIClient:
    api = APIClient()
    if role is not None:
        api.force_authenticate(user=users[role])
    return api


def test_the_walk_covers_every_write_operation():
    operations = {(method, path) for path, method, _ in write_operations()}
    assert len(operations) >= 22, operations  # 17 with a body and 5 without (open, close, next, sample, retry)
    for expected in ("/api/v1/exports/", "/api/v1/prompts/import/", "/api/v1/assignments/{assignment_id}/submit/"):
        assert ("post", expected) in operations


@pytest.mark.parametrize(
    ("path", "method", "operation"),
    [pytest.param(*entry, id=f"{entry[1]} {entry[0]}") for entry in write_operations()],
)
def test_every_write_refuses_an_unknown_field_naming_it(world, path, method, operation):
    users, ids = world
    components = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    # A path id the world has no object for is 1: enough where the view reads its body before looking it up.
    url = re.sub(r"\{(\w+)\}", lambda match: str(ids.get(match.group(1), 1)), path)
    reached = []
    for role in ROLES:
        response = getattr(client(users, role), method)(url, **request_for(operation, components))
        if response.status_code in (401, 403):
            continue
        reached.append(role)
        # A 404 here: give world() an object for the path's id, or read the body before the lookup.
        assert response.status_code == 400, (role, method, path, response.status_code, response.content[:300])
        body = response.json()
        assert UNKNOWN in body, (role, method, path, body)
        assert "Unknown field" in body[UNKNOWN][0], body
    assert reached, f"no role may call {method} {path}"


# --- the case that started it: an export's filter beside `filters`, not inside --------------------------------


def test_an_export_with_batches_at_the_top_level_is_refused_not_run_on_every_batch(client_for, researcher):
    wanted, other = make_batch(comparisons=2), make_batch(comparisons=2)
    assert other.pk != wanted.pk
    response = client_for(researcher).post("/api/v1/exports/", {"batches": [wanted.pk]}, format="json")
    assert response.status_code == 400, (response.status_code, response.content[:300])  # 202 before
    message = response.json()["batches"][0]
    assert "Unknown field" in message and '"filters"' in message, message
    assert not ExportRun.objects.exists()


def test_an_export_with_batches_inside_filters_is_queued(client_for, researcher):
    batch = make_batch(comparisons=2)
    response = client_for(researcher).post("/api/v1/exports/", {"filters": {"batches": [batch.pk]}}, format="json")
    assert response.status_code == 202, response.content[:300]
    assert ExportRun.objects.get().filters["batches"] == [batch.pk]


# --- the shape of the refusal ----------------------------------------------------------------------------------


def test_a_nested_input_names_its_unknown_field_under_its_own(client_for, batch_admin):
    batch = make_batch(comparisons=0, open_it=False)
    checkpoint = make_checkpoint()
    response_input = {"checkpoint": checkpoint.pk, "text": "an answer", "temperature": 0.7}
    body = {
        "prompt": "A prompt?",
        "first_response": {**response_input, "txt": "typo"},
        "second_response": response_input,
        "better": "first",
    }
    response = client_for(batch_admin).post(f"/api/v1/batches/{batch.pk}/gold/", body, format="json")
    assert response.status_code == 400, response.content[:300]
    assert set(response.json()) == {"first_response"}
    assert "Unknown field" in response.json()["first_response"]["txt"][0]


def test_the_known_fields_errors_come_in_the_same_reply(client_for, annotator):
    batch = make_batch(comparisons=1)
    assignment = client_for(annotator).post(f"/api/v1/batches/{batch.pk}/next/").json()
    url = f"/api/v1/assignments/{assignment['id']}/submit/"
    response = client_for(annotator).post(url, {"choice": "a", "strenght": "better", "idempotency_key": "k"})
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"strength", "strenght"}, body
    assert "Unknown field" in body["strenght"][0] and "strength" in body["strenght"][0]


def test_form_data_keys_of_list_fields_are_known(client_for, annotator):
    form = {"text": "A prompt of my own.", "tags[0]": "math", "tags[1]": "easy"}
    response = client_for(annotator).post("/api/v1/prompts/", form, format="multipart")
    assert response.status_code == 201, response.content[:300]
    assert sorted(response.json()["tags"]) == ["easy", "math"]
    response = client_for(annotator).post("/api/v1/prompts/", {**form, "tagz": "x"}, format="multipart")
    assert response.status_code == 400 and "tagz" in response.json()


def test_an_upload_with_its_fields_still_imports(client_for, batch_admin):
    upload = SimpleUploadedFile("prompts.jsonl", b'{"text": "Imported prompt one."}\n{"text": "And two."}\n')
    response = client_for(batch_admin).post("/api/v1/prompts/import/", {"file": upload}, format="multipart")
    assert response.status_code == 201, response.content[:300]
    upload = SimpleUploadedFile("prompts.jsonl", b'{"text": "Imported prompt three."}\n')
    response = client_for(batch_admin).post(
        "/api/v1/prompts/import/", {"file": upload, "fille": "x"}, format="multipart"
    )
    assert response.status_code == 400 and "fille" in response.json()


def test_an_action_without_a_body_still_takes_an_empty_one(client_for, annotator):
    batch = make_batch(comparisons=1)
    assert client_for(annotator).post(f"/api/v1/batches/{batch.pk}/next/").status_code == 200
    response = client_for(annotator).post(f"/api/v1/batches/{batch.pk}/next/", {}, format="json")
    assert response.status_code == 200
    response = client_for(annotator).post(f"/api/v1/batches/{batch.pk}/next/", {"batch": 1}, format="json")
    assert response.status_code == 400
    assert response.json() == {"batch": ["Unknown field; this request takes no fields."]}


def test_the_shared_validation_of_the_hot_endpoints_refuses_unknown_fields_too():
    class Input(StrictSerializer):
        choice = serializers.CharField()

    validate = shared_validation(Input)
    assert validate({"choice": "a"}) == {"choice": "a"}
    with pytest.raises(serializers.ValidationError) as refused:
        validate({"choice": "a", "extra": 1})
    assert set(refused.value.detail) == {"extra"}
    with pytest.raises(serializers.ValidationError) as refused:
        refuse_input({"x": 1})
    assert set(refused.value.detail) == {"x"}
