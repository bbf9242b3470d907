"""`seed_demo` leaves a usable demo: users who can sign in, a real policy, open batches of real pairs."""

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from backend.batches.models import Batch, Comparison, Prompt
from backend.checkpoints.models import Checkpoint, CheckpointKind

pytestmark = pytest.mark.django_db


def seed() -> dict[str, str]:
    out = StringIO()
    call_command("seed_demo", "--max-new-tokens", "8", stdout=out)
    return dict(re.findall(r"username: (\w+)\s+password: (\S+)", out.getvalue()))


def test_the_demo_is_seeded_once_and_its_users_can_sign_in():
    passwords = seed()
    assert set(passwords) == {"annotator", "admin", "researcher"}
    for username, password in passwords.items():
        assert Client().login(username=username, password=password), username

    policy = Checkpoint.objects.get(kind=CheckpointKind.POLICY)
    assert (policy.path and policy.name) == "smollm2-135m-instruct"
    batches = Batch.objects.order_by("name")
    assert [(b.name, b.status) for b in batches] == [("demo-helpfulness", "open"), ("demo-safety", "open")]
    pair = Comparison.objects.select_related("first_response", "second_response").first()
    assert pair is not None
    assert pair.first_response.text and pair.second_response.text
    assert pair.first_response.temperature != pair.second_response.temperature
    counts = (Comparison.objects.count(), Prompt.objects.count())

    seed()
    assert (Comparison.objects.count(), Prompt.objects.count()) == counts
