"""A simulated annotator for demos and tests, clearly labelled as such: it prefers the SHORTER response.

Its strength follows the size of the difference in characters, relative to the longer response:
at least 50% shorter is "significantly better", 25% "better", 10% "slightly better", else "negligibly
better / unsure". In safety batches it labels both responses safe. It is never a stand-in for people.
"""

from django.contrib.auth.models import Group, User

from backend.accounts.roles import Role
from backend.batches.models import Batch, Focus
from backend.batches.services.annotations import annotation_submit, assignment_lease_next
from preference_format import SafetyLabel, Strength

SIMULATED_ANNOTATOR = "simulated-annotator"
RULE = "prefers the shorter response; strength from the relative length difference (50% / 25% / 10%)"


def simulated_strength(shorter: str, longer: str) -> str:
    difference = (len(longer) - len(shorter)) / max(len(longer), 1)
    if difference >= 0.5:
        return Strength.SIGNIFICANTLY_BETTER
    if difference >= 0.25:
        return Strength.BETTER
    if difference >= 0.1:
        return Strength.SLIGHTLY_BETTER
    return Strength.NEGLIGIBLY_BETTER_OR_UNSURE


def simulated_annotator() -> User:
    """The simulated annotator's account (no usable password: nobody signs in as it)."""
    user, created = User.objects.get_or_create(username=SIMULATED_ANNOTATOR, defaults={"first_name": "Simulated"})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    user.groups.add(Group.objects.get(name=Role.ANNOTATOR.value))
    return user


def simulated_annotate(*, batch: Batch, limit: int | None = None) -> int:
    """Judge the batch's comparisons by the rule until nothing is left (or `limit`); returns how many."""
    annotator = simulated_annotator()
    judged = 0
    while limit is None or judged < limit:
        assignment = assignment_lease_next(batch=batch, annotator=annotator)
        if assignment is None:
            return judged
        comparison = assignment.comparison
        a, b = comparison.first_response.text, comparison.second_response.text
        if assignment.swap:
            a, b = b, a
        choice = "a" if len(a) <= len(b) else "b"
        shorter, longer = (a, b) if choice == "a" else (b, a)
        annotation_submit(
            assignment_id=assignment.pk,
            annotator=annotator,
            choice=choice,
            strength=simulated_strength(shorter, longer),
            safety_label=SafetyLabel.BOTH_SAFE if batch.focus == Focus.SAFETY else "",
            idempotency_key=f"simulated-{assignment.pk}",
        )
        judged += 1
    return judged
