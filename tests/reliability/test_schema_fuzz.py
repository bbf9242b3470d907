"""Every API operation in the OpenAPI schema (/api/v1/schema/) fuzzed with schemathesis: no input is a 5xx.

Bounded and repeatable: SCHEMA_EXAMPLES (10) derandomized examples per operation and role, sent through the
WSGI application gunicorn runs, signed in by token as an admin, a researcher and an annotator. A batch with
comparisons and a lease exist, so that some generated ids reach real rows.
"""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token

from backend.accounts.roles import Role
from config.wsgi import application
from tests.factories import make_batch, make_user
from tests.reliability.harness import size

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = size("SCHEMA_EXAMPLES", 10)
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture
def api_schema():
    """The schema through the WSGI app; requests keep the test's connection open, as with Django's test client."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield schemathesis.openapi.from_wsgi("/api/v1/schema/", application)
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture
def tokens(client_for, settings) -> dict[Role, str]:
    """A token per role; an open batch with comparisons, one of them leased to the annotator."""
    settings.DEBUG_PROPAGATE_EXCEPTIONS = True  # a 5xx fails with its traceback, not an HTML page
    users = {role: make_user(role) for role in Role}
    batch = make_batch(comparisons=3)
    client_for(users[Role.ANNOTATOR]).post(f"/api/v1/batches/{batch.pk}/next/")
    return {role: Token.objects.create(user=user).key for role, user in users.items()}


def assert_no_server_error(case, token: str) -> None:
    response = case.call(headers={"Authorization": f"Token {token}"})
    assert response.status_code < 500, (case.method, case.formatted_path, case.body, response.text[:500])


@schema.parametrize()
@FUZZ
def test_as_an_admin_no_input_is_a_server_error(case, tokens):
    assert_no_server_error(case, tokens[Role.ADMIN])


@schema.parametrize()
@FUZZ
def test_as_a_researcher_no_input_is_a_server_error(case, tokens):
    assert_no_server_error(case, tokens[Role.RESEARCHER])


@schema.parametrize()
@FUZZ
def test_as_an_annotator_no_input_is_a_server_error(case, tokens):
    assert_no_server_error(case, tokens[Role.ANNOTATOR])
