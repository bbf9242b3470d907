"""The lineage of an artifact: the turn of the loop around a batch, export, training run or checkpoint, as a graph.

Nodes are batches, exports, training runs (reward models and policy runs) and checkpoints; edges are the database
links between them, drawn in the direction the data flows:

    batch -exported-> export -training data-> training run -produced-> checkpoint -reward model-> policy run
    policy run -produced-> checkpoint -sampled-> batch          (and: checkpoint -base-> run, -selection-> batch)

From the starting node the walk goes down (what was made from it) and up (what it was made from), and every node
reached going down also brings its own inputs (a policy run found from the helpfulness export still shows the
safety reward model it used). Two kinds of node end a walk, so that one page shows one turn and not the whole
history: a batch other than the start (the turn begins and ends at batches), and a checkpoint or run reached over a
`base` link (the policy a run started from belongs to the turn before; the run that trains the new policy further
belongs to the turn after). The edges shown are every link between the nodes found.
"""

from collections import defaultdict, deque
from collections.abc import Iterable
from typing import Any

from django.db.models import Model, Q
from django.urls import reverse

from backend.batches.models import Batch
from backend.batches.selectors import batch_progress
from backend.checkpoints.models import Checkpoint, CheckpointKind, TrainingRun
from backend.errors import NotFound
from exports.models import ExportRun

# The kinds a lineage starts from, as they appear in its URLs (the API's own path words).
KINDS: dict[str, type[Model]] = {
    "batches": Batch,
    "exports": ExportRun,
    "training-runs": TrainingRun,
    "checkpoints": Checkpoint,
}
KIND_UNKNOWN = "Lineage starts from one of: {kinds}; got '{kind}'."
NODE_NOT_FOUND = "No {noun} with id {id}."
NOUNS = {"batches": "batch", "exports": "export", "training-runs": "training run", "checkpoints": "checkpoint"}
MAX_NODES = 200
"""A walk stops adding nodes past this many (the reply says `truncated`)."""

BASE = "base"
RELATIONS = ("exported", "training data", "produced", "reward model", BASE, "sampled", "selection")
REWARD_KINDS = (CheckpointKind.REWARD_HELPFULNESS, CheckpointKind.REWARD_SAFETY)
POLICY_RUN_KINDS = (TrainingRun.Kind.REJECTION_SAMPLING, TrainingRun.Kind.PPO)
_TYPES: dict[type[Model], str] = {
    Batch: "batch",
    ExportRun: "export",
    TrainingRun: "training_run",
    Checkpoint: "checkpoint",
}
_URL_KINDS = {_TYPES[model]: kind for kind, model in KINDS.items()}
NODE_TYPES = tuple(_TYPES.values())

Link = tuple[Model, str]


def _key(obj: Model) -> str:
    return f"{_TYPES[type(obj)]}:{obj.pk}"


def _parents(obj: Model) -> list[Link]:
    """What `obj` was made from, each with the name of the link."""
    if isinstance(obj, Batch):
        links: list[Link] = [(c, "sampled") for c in obj.checkpoints.order_by("id")]
        return [*links, (obj.selection_checkpoint, "selection")] if obj.selection_checkpoint else links
    if isinstance(obj, ExportRun):
        return [(b, "exported") for b in obj.batches.order_by("id")]
    if isinstance(obj, TrainingRun):
        named = [
            (obj.export, "training data"),
            (obj.base_checkpoint, BASE),
            (obj.reward_helpfulness, "reward model"),
            (obj.reward_safety, "reward model"),
        ]
        return [(parent, relation) for parent, relation in named if parent is not None]
    assert isinstance(obj, Checkpoint)
    return [(run, "produced") for run in _runs(Q(output_checkpoint=obj))]


def _children(obj: Model) -> list[Link]:
    """What was made from `obj`, each with the name of the link."""
    if isinstance(obj, Batch):
        return [(e, "exported") for e in obj.exports.order_by("id")]
    if isinstance(obj, ExportRun):
        return [(run, "training data") for run in _runs(Q(export=obj))]
    if isinstance(obj, TrainingRun):
        return [(obj.output_checkpoint, "produced")] if obj.output_checkpoint else []
    assert isinstance(obj, Checkpoint)
    return [
        *((run, BASE) for run in _runs(Q(base_checkpoint=obj))),
        *((run, "reward model") for run in _runs(Q(reward_helpfulness=obj) | Q(reward_safety=obj))),
        *((b, "sampled") for b in obj.batches.order_by("id")),
        *((b, "selection") for b in Batch.objects.filter(selection_checkpoint=obj).order_by("id")),
    ]


def _runs(query: Q) -> Iterable[TrainingRun]:
    return (
        TrainingRun.objects.filter(query)
        .select_related("export", "base_checkpoint", "reward_helpfulness", "reward_safety", "output_checkpoint")
        .order_by("id")
    )


class _Links:
    """Each node's parents, read once (the walk and the edges both ask)."""

    def __init__(self) -> None:
        self.seen: dict[str, list[Link]] = {}

    def parents(self, obj: Model) -> list[Link]:
        key = _key(obj)
        if key not in self.seen:
            self.seen[key] = _parents(obj)
        return self.seen[key]


def _walk(start: Model, links: _Links) -> tuple[dict[str, Model], bool]:
    """The nodes of the start's turn (see the module's docstring), and whether MAX_NODES cut the walk short."""
    found = {_key(start): start}
    up, down = deque([start]), deque([start])
    went_up, went_down = {_key(start)}, {_key(start)}
    truncated = False

    def reach(obj: Model, relation: str, *queues: tuple[deque[Model], set[str]]) -> None:
        nonlocal truncated
        key = _key(obj)
        if key not in found:
            if len(found) >= MAX_NODES:
                truncated = True
                return
            found[key] = obj
        if relation == BASE or isinstance(obj, Batch):
            return
        for queue, went in queues:
            if key not in went:
                went.add(key)
                queue.append(obj)

    while up or down:
        if down:
            for child, relation in _children(down.popleft()):
                reach(child, relation, (down, went_down), (up, went_up))
        else:
            for parent, relation in links.parents(up.popleft()):
                reach(parent, relation, (up, went_up))
    return found, truncated


def _layers(keys: list[str], edges: list[dict[str, str]]) -> dict[str, int]:
    """Each node's column: the longest path to it from a node without inputs (a link that closes a cycle, which
    only hand-edited data can make, is ignored)."""
    inputs: dict[str, set[str]] = defaultdict(set)
    outputs: dict[str, list[str]] = defaultdict(list)
    for edge in edges:
        inputs[edge["target"]].add(edge["source"])
        outputs[edge["source"]].append(edge["target"])
    layer = dict.fromkeys(keys, 0)
    waiting = {key: len(inputs[key]) for key in keys}
    ready = deque(key for key in keys if not waiting[key])
    done: set[str] = set()
    while len(done) < len(keys):
        if not ready:  # a cycle: release its earliest node
            ready.append(next(key for key in keys if key not in done))
        key = ready.popleft()
        if key in done:
            continue
        done.add(key)
        for target in outputs[key]:
            if target not in done:
                layer[target] = max(layer[target], layer[key] + 1)
                waiting[target] -= 1
                if waiting[target] == 0:
                    ready.append(target)
    return layer


def _reward_accuracy(run: TrainingRun | None) -> float | None:
    return ((run.metrics or {}).get("eval") or {}).get("accuracy") if run is not None else None


def _reward_gain(run: TrainingRun) -> dict[str, Any]:
    """A policy run's reward gain: PPO's held-out reward after less before; rejection sampling's best-of-K score
    less the mean sample score (what choosing the best sample gained)."""
    metrics = run.metrics or {}
    if run.kind == TrainingRun.Kind.PPO:
        before, after, basis = metrics.get("heldout_reward_before"), metrics.get("heldout_reward_after"), "held-out"
    else:
        before, after, basis = metrics.get("mean_sample_score"), metrics.get("mean_best_score"), "best-of-k"
    gain = after - before if isinstance(before, int | float) and isinstance(after, int | float) else None
    return {"reward_before": before, "reward_after": after, "reward_gain": gain, "reward_gain_basis": basis}


def _figures(obj: Model, producers: dict[int | None, TrainingRun]) -> dict[str, Any]:
    if isinstance(obj, Batch):
        progress = batch_progress(batch=obj)
        return {
            "name": obj.name,
            "focus": obj.focus,
            "status": obj.status,
            "week": obj.iso_week,
            "comparisons": progress.comparisons,
            "annotations": progress.annotations,
            "held_out": progress.held_out,
        }
    if isinstance(obj, ExportRun):
        manifest = obj.manifest or {}
        return {
            "status": obj.status,
            "rows": obj.rows_written,
            "rows_per_split": (manifest.get("counts") or {}).get("split") or {},
            "schema_version": manifest.get("schema_version"),
            "mix": obj.mix,
            "granularity": obj.granularity,
        }
    if isinstance(obj, TrainingRun):
        figures: dict[str, Any] = {"kind": obj.kind, "status": obj.status}
        if obj.kind in POLICY_RUN_KINDS:
            return {**figures, **_reward_gain(obj)}
        return {**figures, "accuracy": _reward_accuracy(obj)}
    assert isinstance(obj, Checkpoint)
    figures = {"name": obj.name, "kind": obj.kind}
    if obj.kind in REWARD_KINDS:
        figures["accuracy"] = _reward_accuracy(producers.get(obj.pk))
    return figures


def _label(obj: Model) -> str:
    if isinstance(obj, Batch | Checkpoint):
        return obj.name
    return f"Export {obj.pk}" if isinstance(obj, ExportRun) else f"Run {obj.pk}"


def _urls(node_type: str, pk: int) -> dict[str, str]:
    page = {
        "batch": reverse("dashboard-batch", args=[pk]),
        "export": reverse("admin:exports_exportrun_change", args=[pk]),
        "training_run": reverse("admin:checkpoints_trainingrun_change", args=[pk]),
        "checkpoint": reverse("admin:checkpoints_checkpoint_change", args=[pk]),
    }[node_type]
    api = {"batch": "batch-detail", "export": "export-detail", "training_run": "training-run-detail"}
    return {
        "url": page,
        "api_url": reverse(api.get(node_type, "checkpoint-detail"), args=[pk]),
        "lineage_url": reverse("dashboard-lineage", args=[_URL_KINDS[node_type], pk]),
    }


def lineage(*, kind: str, node_id: int) -> dict[str, Any]:
    """The graph of the turn around one artifact: nodes (with their figures, layer and links) and edges."""
    model = KINDS.get(kind)
    if model is None:
        raise NotFound(KIND_UNKNOWN.format(kinds=", ".join(KINDS), kind=kind[:40]))
    start = model._default_manager.filter(pk=node_id).first()
    if start is None:
        raise NotFound(NODE_NOT_FOUND.format(noun=NOUNS[kind], id=node_id))
    links = _Links()
    found, truncated = _walk(start, links)
    edges: list[dict[str, str]] = []
    for key, obj in found.items():
        for parent, relation in links.parents(obj):
            edge = {"source": _key(parent), "target": key, "relation": relation}
            if edge["source"] in found and edge not in edges:
                edges.append(edge)
    order = {key: index for index, key in enumerate(found)}
    layers = _layers(list(found), edges)
    checkpoints = [obj for obj in found.values() if isinstance(obj, Checkpoint)]
    producers = {run.output_checkpoint_id: run for run in TrainingRun.objects.filter(output_checkpoint__in=checkpoints)}
    nodes = [
        {
            "key": key,
            "type": _TYPES[type(obj)],
            "id": obj.pk,
            "label": _label(obj),
            "layer": layers[key],
            "figures": _figures(obj, producers),
            **_urls(_TYPES[type(obj)], obj.pk),
        }
        for key, obj in found.items()
    ]
    nodes.sort(key=lambda node: (node["layer"], order[node["key"]]))
    return {"root": _key(start), "nodes": nodes, "edges": edges, "truncated": truncated}


def _number(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, int | float) else "n/a"


def describe(node: dict[str, Any]) -> dict[str, Any]:
    """The node as the page draws it: a caption (what it is) and a few lines of its figures, as plain text."""
    figures, node_type = node["figures"], node["type"]
    if node_type == "batch":
        caption = "batch"
        lines = [
            f"{figures['focus']} · {figures['status']} · {figures['week']}",
            f"{figures['comparisons']} comparisons · {figures['held_out']} held out",
            f"{figures['annotations']} annotations",
        ]
    elif node_type == "export":
        caption = "export"
        splits = " · ".join(f"{split} {rows}" for split, rows in sorted(figures["rows_per_split"].items()))
        lines = [
            f"{figures['status']} · schema v{figures['schema_version'] or '?'}",
            splits or "no rows yet",
            f"{figures['rows']} rows · {figures['mix'] or 'no'} mix",
        ]
    elif node_type == "training_run":
        policy = figures["kind"] in POLICY_RUN_KINDS
        caption = "policy run" if policy else "reward-model run"
        measure = (
            f"reward gain {_number(figures['reward_gain'], '+.3f')} ({figures['reward_gain_basis']})"
            if policy
            else f"accuracy {_number(figures['accuracy'], '.1f')}%"
        )
        lines = [TrainingRun.Kind(figures["kind"]).label.removeprefix("Policy: "), figures["status"], measure]
    else:
        reward = figures["kind"] in REWARD_KINDS
        caption = "reward model" if reward else "policy checkpoint"
        lines = [CheckpointKind(figures["kind"]).label]
        if reward:
            lines.append(f"accuracy {_number(figures['accuracy'], '.1f')}%")
    return {**node, "caption": caption, "lines": lines}
