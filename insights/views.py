"""The dashboard pages: each reads one selector and draws its figures as inline SVG. Admins and researchers only."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from backend.accounts.roles import Role, user_has_role
from backend.errors import NotFound, ServiceError
from insights import charts, selectors
from insights.lineage import describe, lineage
from insights.services import response_scores_request
from insights.tasks import enqueue_response_scores

View = Callable[..., HttpResponse]


def staff_only(view: View) -> View:
    """Signed-in admins and researchers; annotators get 403."""

    @login_required
    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not user_has_role(request.user, Role.ADMIN, Role.RESEARCHER):
            raise PermissionDenied("The dashboards are for admins and researchers.")
        try:
            return view(request, *args, **kwargs)
        except NotFound as error:
            raise Http404(error.message) from error

    return guarded


def _percent(value: float | None) -> float:
    return 100 * value if value is not None else 0.0


@require_GET
@staff_only
def index(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "insights/index.html",
        {"batches": selectors.batch_overview(), "annotators": selectors.annotator_overview()},
    )


@require_GET
@staff_only
def batch_page(request: HttpRequest, batch_id: int) -> HttpResponse:
    figures = selectors.batch_dashboard(batch_id=batch_id)
    hours = figures["throughput_per_hour"]
    time = figures["time_on_task"]
    edges = time["edges_s"]
    drawn = {
        "throughput": charts.line_chart(
            [h["hour"][5:16].replace("T", " ") for h in hours],
            [h["count"] for h in hours],
            title="Judgements per hour",
            fmt=".0f",
        ),
        "time": charts.bar_chart(
            [
                f"{edges[i]}-{edges[i + 1]}s" if i + 2 < len(edges) else f"{edges[i]}s+"
                for i in range(len(time["counts"]))
            ],
            time["counts"],
            title="Time on task",
        ),
        "strengths": charts.bar_chart(
            [row["strength"].replace("_", " ") for row in figures["strengths"]],
            [row["count"] for row in figures["strengths"]],
            title="Strength",
        ),
        "safety": charts.bar_chart(
            [row["label"].replace("_", " ") for row in figures["safety_labels"]],
            [_percent(row["share"]) for row in figures["safety_labels"]],
            reference=[_percent(row["paper_share"]) for row in figures["safety_labels"]],
            reference_name="Llama 2",
            title="Safety labels (%)",
            top=100,
        ),
    }
    return render(request, "insights/batch.html", {"figures": figures, "charts": drawn})


@require_GET
@staff_only
def annotator_page(request: HttpRequest, annotator_id: int) -> HttpResponse:
    figures = selectors.annotator_dashboard(annotator_id=annotator_id)
    per_day = figures["volume"]["per_day"]
    edges = figures["time_on_task"]["edges_s"]
    drift = [
        {
            **series,
            "chart": charts.line_chart(
                [p["period"] for p in series["points"]],
                [p["rate"] for p in series["points"]],
                title=f"Agreement with {series['checkpoint']['name']}",
                top=1.0,
                reference=0.5,
            ),
        }
        for series in figures["reward_model_agreement"]
    ]
    drawn = {
        "volume": charts.bar_chart(
            [d["day"] for d in per_day], [d["count"] for d in per_day], title="Judgements per day"
        ),
        "time": charts.bar_chart(
            [f"{edges[i]}s" for i in range(len(figures["time_on_task"]["counts"]))],
            figures["time_on_task"]["counts"],
            title="Time on task",
        ),
    }
    return render(request, "insights/annotator.html", {"figures": figures, "charts": drawn, "drift": drift})


@require_POST
@staff_only
def score_responses(request: HttpRequest, annotator_id: int) -> HttpResponse:
    """Queue scoring with the newest reward models, then back to the annotator's page."""
    for checkpoint in selectors.newest_reward_checkpoints().values():
        try:
            response_scores_request(checkpoint_id=checkpoint.pk, enqueue=enqueue_response_scores)
        except ServiceError as error:
            raise Http404(error.message) from error
    return redirect("dashboard-annotator", annotator_id=annotator_id)


@require_GET
@staff_only
def models_page(request: HttpRequest) -> HttpResponse:
    figures = selectors.models_dashboard()
    runs = [
        {
            **run,
            "chart": charts.line_chart(
                [str(p["step"]) for p in run["curve"]], [p["loss"] for p in run["curve"]], title=f"Run {run['id']} loss"
            )
            if run["curve"]
            else None,
        }
        for run in figures["training_runs"]
    ]
    board = figures["leaderboard"]
    top = max([r["high"] for r in board] + [1000.0])
    for row in board:
        row["bar_x"], row["bar_width"] = 100 * row["low"] / top, 100 * (row["high"] - row["low"]) / top
    return render(request, "insights/models.html", {"figures": figures, "runs": runs})


@require_GET
@staff_only
def lineage_page(request: HttpRequest, kind: str, node_id: int) -> HttpResponse:
    """The turn of the loop around one artifact, drawn as a graph; an unknown one is a 404 that says why."""
    try:
        graph = lineage(kind=kind, node_id=node_id)
    except NotFound as error:
        return render(request, "insights/lineage.html", {"error": error.message}, status=404)
    nodes = [describe(node) for node in graph["nodes"]]
    root = next(node for node in nodes if node["key"] == graph["root"])
    drawn = charts.lineage_graph(nodes, graph["edges"], root=graph["root"], title=f"Lineage of {root['label']}")
    labels = {node["key"]: node["label"] for node in nodes}
    edges = [
        {**edge, "source_label": labels[edge["source"]], "target_label": labels[edge["target"]]}
        for edge in graph["edges"]
    ]
    return render(
        request,
        "insights/lineage.html",
        {
            "graph": graph,
            "root": root,
            "nodes": nodes,
            "edges": edges,
            "chart": drawn,
            "kind": kind,
            "node_id": node_id,
        },
    )
