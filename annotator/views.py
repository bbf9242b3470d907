"""Thin views: each reads through a selector and renders; the comparison page's work goes through the API."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from backend.accounts.roles import Role, user_has_role
from backend.batches.models import Batch, SkipReason
from backend.batches.selectors import annotator_batch_overview, batch_get, own_assignment
from backend.batches.services.annotations import SAFETY_LABEL_CHOSEN_UNSAFE
from backend.errors import NotFound
from preference_format import STRENGTHS, SafetyLabel, Strength, choices

# The keyboard map is data so the page, the help panel and the tests read the same keys.
KEYS = {
    "choose_a": "a",
    "choose_b": "b",
    "strength": {str(key): strength.value for key, strength in enumerate(STRENGTHS, start=1)},  # 1: strongest
    # Safety batches: each response is marked safe or unsafe; the page derives the safety label.
    "safety": {"q": ["a", "safe"], "w": ["a", "unsafe"], "o": ["b", "safe"], "p": ["b", "unsafe"]},
    "submit": "Enter",
    "skip": "k",
    "comment": "c",
    "help": "?",
}


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    is_annotator = user_has_role(user, Role.ANNOTATOR)
    rows = annotator_batch_overview(annotator=user) if is_annotator else []  # type: ignore[arg-type]
    return render(
        request,
        "annotator/home.html",
        {"rows": rows, "is_annotator": is_annotator, "is_staff_role": user_has_role(user, Role.ADMIN, Role.RESEARCHER)},
    )


def _work_page(request: HttpRequest, batch: Batch, assignment_id: int | None) -> HttpResponse:
    config = {
        "batch": {
            "id": batch.pk,
            "name": batch.name,
            "focus": batch.focus,
            "writesPrompts": batch.annotators_write_prompts,
        },
        "assignmentId": assignment_id,
        "keys": KEYS,
        "strengths": [{"value": value, "label": label} for value, label in choices(Strength)],
        "safetyLabels": [{"value": value, "label": label} for value, label in choices(SafetyLabel)],
        "skipReasons": [{"value": value, "label": label} for value, label in SkipReason.choices],
        "chosenUnsafeMessage": SAFETY_LABEL_CHOSEN_UNSAFE,
        "userId": request.user.pk,
    }
    return render(request, "annotator/work.html", {"batch": batch, "config": config})


@require_GET
@login_required
def batch_work(request: HttpRequest, batch_id: int) -> HttpResponse:
    if not user_has_role(request.user, Role.ANNOTATOR):
        raise Http404("Only annotators work on batches.")
    try:
        batch = batch_get(batch_id=batch_id, user=request.user)  # type: ignore[arg-type]
    except NotFound as error:
        raise Http404(error.message) from error
    return _work_page(request, batch, None)


@require_GET
@login_required
def assignment_work(request: HttpRequest, assignment_id: int) -> HttpResponse:
    """Open one of your own assignments (a reload, a link); anyone else's is a 404."""
    assignment = own_assignment(assignment_id=assignment_id, annotator=request.user)  # type: ignore[arg-type]
    if assignment is None:
        raise Http404("No such assignment of yours.")
    return _work_page(request, assignment.comparison.batch, assignment.pk)
