"""The lineage page and its JSON twin on a small known chain: two judged batches (helpfulness and safety), their
exports, a reward model trained on each, a PPO run that used both, its new checkpoint, and the next batch that
samples it against the policy it started from."""

from dataclasses import dataclass

import pytest
from django.urls import reverse

from backend.accounts.roles import Role
from backend.batches.models import Batch, Focus
from backend.batches.selectors import batch_progress
from backend.batches.services.annotations import annotation_submit, assignment_lease_next
from backend.batches.services.batches import batch_create, batch_open
from backend.checkpoints.models import Checkpoint, CheckpointKind, TrainingRun
from exports.models import ExportRun
from exports.services import export_build, export_create
from insights.lineage import lineage
from tests.factories import make_checkpoint, make_comparison, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def exports_root(settings, tmp_path):
    settings.EXPORTS_ROOT = tmp_path / "exports"


@dataclass
class Chain:
    base: Checkpoint
    batch: Batch
    safety_batch: Batch
    export: ExportRun
    safety_export: ExportRun
    reward_run: TrainingRun
    reward_model: Checkpoint
    safety_run: TrainingRun
    safety_model: Checkpoint
    policy_run: TrainingRun
    new_policy: Checkpoint
    next_batch: Batch

    def key(self, name: str) -> str:
        obj = getattr(self, name)
        kind = {Batch: "batch", ExportRun: "export", TrainingRun: "training_run", Checkpoint: "checkpoint"}[type(obj)]
        return f"{kind}:{obj.pk}"


def judged_batch(name: str, policy: Checkpoint, *, focus: str = Focus.HELPFULNESS) -> Batch:
    """Four pairs that `policy` answered at two temperatures, half of them held out, each judged once."""
    batch, _ = batch_create(
        name=name,
        target_comparisons=4,
        created_by=None,
        focus=focus,
        checkpoint_ids=[policy.pk],
        temperatures=[0.7, 1.0],
        held_out_fraction=0.5,
        gold_rate=0,
    )
    for _ in range(4):
        make_comparison(batch, checkpoints=(policy, policy))
    batch = batch_open(batch=batch)
    annotator = make_user(Role.ANNOTATOR)
    for i in range(4):
        lease = assignment_lease_next(batch=batch, annotator=annotator)
        assert lease is not None
        annotation_submit(
            assignment_id=lease.pk,
            annotator=annotator,
            choice="a",
            strength="better",
            safety_label="both_safe" if focus == Focus.SAFETY else "",
            idempotency_key=f"{name}-{i}",
        )
    return batch


def built_export(batch: Batch, mix: str) -> ExportRun:
    run, _ = export_create(
        created_by=None, enqueue=lambda _: None, filters={"batches": [batch.pk]}, formats=["jsonl"], mix=mix
    )
    return export_build(run_id=run.pk)


def reward_model(export: ExportRun, kind: str, accuracy: float) -> tuple[TrainingRun, Checkpoint]:
    checkpoint = make_checkpoint(f"{kind}-from-export-{export.pk}", kind=kind)
    run = TrainingRun.objects.create(
        kind=kind,
        status=TrainingRun.Status.DONE,
        export=export,
        builtin_backbone="all-minilm-l6-v2",
        metrics={"eval": {"accuracy": accuracy, "pairs": 2}},
        output_checkpoint=checkpoint,
    )
    return run, checkpoint


@pytest.fixture
def chain() -> Chain:
    base = make_checkpoint("policy-v0")
    batch = judged_batch("week-1-helpfulness", base)
    safety_batch = judged_batch("week-1-safety", base, focus=Focus.SAFETY)
    export, safety_export = built_export(batch, "helpfulness"), built_export(safety_batch, "safety")
    reward_run, reward = reward_model(export, CheckpointKind.REWARD_HELPFULNESS, 75.0)
    safety_run, safety = reward_model(safety_export, CheckpointKind.REWARD_SAFETY, 90.0)
    new_policy = make_checkpoint("policy-v1-ppo")
    policy_run = TrainingRun.objects.create(
        kind=TrainingRun.Kind.PPO,
        status=TrainingRun.Status.DONE,
        export=export,
        base_checkpoint=base,
        reward_helpfulness=reward,
        reward_safety=safety,
        metrics={"heldout_reward_before": 0.25, "heldout_reward_after": 0.625},
        output_checkpoint=new_policy,
    )
    next_batch, _ = batch_create(
        name="week-2-helpfulness",
        target_comparisons=2,
        created_by=None,
        checkpoint_ids=[new_policy.pk, base.pk],
        temperatures=[0.7],
    )
    return Chain(
        base, batch, safety_batch, export, safety_export, reward_run, reward, safety_run, safety, policy_run,
        new_policy, next_batch,
    )  # fmt: skip


# The whole turn, the same from every node of it: (source, relation, target) by the chain's names.
EDGES = {
    ("batch", "exported", "export"),
    ("safety_batch", "exported", "safety_export"),
    ("export", "training data", "reward_run"),
    ("safety_export", "training data", "safety_run"),
    ("export", "training data", "policy_run"),
    ("reward_run", "produced", "reward_model"),
    ("safety_run", "produced", "safety_model"),
    ("reward_model", "reward model", "policy_run"),
    ("safety_model", "reward model", "policy_run"),
    ("base", "base", "policy_run"),
    ("policy_run", "produced", "new_policy"),
    ("new_policy", "sampled", "next_batch"),
    ("base", "sampled", "next_batch"),
    ("base", "sampled", "batch"),
    ("base", "sampled", "safety_batch"),
}
STARTS = [
    ("batches", "batch"),
    ("exports", "export"),
    ("training-runs", "reward_run"),
    ("checkpoints", "reward_model"),
    ("training-runs", "policy_run"),
    ("checkpoints", "new_policy"),
    ("batches", "next_batch"),
    ("batches", "safety_batch"),
]


def by_name(chain: Chain, graph: dict) -> tuple[set[str], set[tuple[str, str, str]]]:
    names = {chain.key(name): name for name in Chain.__dataclass_fields__}
    nodes = {names[node["key"]] for node in graph["nodes"]}
    edges = {(names[e["source"]], e["relation"], names[e["target"]]) for e in graph["edges"]}
    return nodes, edges


@pytest.mark.parametrize(("kind", "start"), STARTS)
def test_the_json_from_each_node_holds_the_whole_chain(chain, client_for, kind, start):
    obj = getattr(chain, start)
    response = client_for(make_user(Role.RESEARCHER)).get(f"/api/v1/lineage/{kind}/{obj.pk}/")
    assert response.status_code == 200
    graph = response.json()
    nodes, edges = by_name(chain, graph)
    assert graph["root"] == chain.key(start) and not graph["truncated"]
    assert nodes == set(Chain.__dataclass_fields__)
    assert edges == EDGES
    layer = {node["key"]: node["layer"] for node in graph["nodes"]}
    assert all(layer[e["source"]] < layer[e["target"]] for e in graph["edges"])  # data flows left to right
    order = ["batch", "export", "reward_run", "reward_model", "policy_run", "new_policy", "next_batch"]
    assert [layer[chain.key(name)] for name in order] == sorted(layer[chain.key(name)] for name in order)


def test_each_node_carries_its_key_figures_and_links(chain):
    graph = lineage(kind="batches", node_id=chain.batch.pk)
    node = {n["key"]: n for n in graph["nodes"]}
    progress = batch_progress(batch=chain.batch)
    batch = node[chain.key("batch")]
    assert batch["figures"]["comparisons"] == progress.comparisons == 4
    assert batch["figures"]["annotations"] == progress.annotations == 4
    assert batch["figures"]["held_out"] == progress.held_out > 0
    assert batch["url"] == f"/dashboards/batches/{chain.batch.pk}/"
    assert batch["lineage_url"] == f"/dashboards/lineage/batches/{chain.batch.pk}/"
    export = node[chain.key("export")]["figures"]
    assert export["rows_per_split"] == chain.export.manifest["counts"]["split"]
    assert sum(export["rows_per_split"].values()) == chain.export.rows_written > 0
    assert export["schema_version"] == 1 and export["status"] == "done"
    assert node[chain.key("export")]["api_url"] == f"/api/v1/exports/{chain.export.pk}/"
    assert node[chain.key("reward_run")]["figures"]["accuracy"] == 75.0
    assert node[chain.key("reward_model")]["figures"] == {
        "name": chain.reward_model.name,
        "kind": "reward_helpfulness",
        "accuracy": 75.0,
    }
    policy = node[chain.key("policy_run")]["figures"]
    assert policy["kind"] == "ppo" and policy["reward_gain"] == pytest.approx(0.375)
    assert node[chain.key("policy_run")]["url"] == f"/admin/checkpoints/trainingrun/{chain.policy_run.pk}/change/"
    assert node[chain.key("new_policy")]["figures"] == {"name": "policy-v1-ppo", "kind": "policy"}
    assert node[chain.key("new_policy")]["url"] == f"/admin/checkpoints/checkpoint/{chain.new_policy.pk}/change/"


def test_the_policy_a_run_started_from_shows_its_own_turn_not_the_next(chain):
    """The base policy is the previous turn's output: its page shows the batches that sampled it and the run that
    trained it further, and the run's own page shows the rest."""
    nodes, edges = by_name(chain, lineage(kind="checkpoints", node_id=chain.base.pk))
    assert nodes == {"base", "batch", "safety_batch", "next_batch", "policy_run"}
    assert ("base", "base", "policy_run") in edges


def test_the_export_links_the_batches_it_read(chain):
    assert list(chain.export.batches.all()) == [chain.batch]
    assert list(chain.batch.exports.all()) == [chain.export]


@pytest.mark.parametrize("role", [Role.ADMIN, Role.RESEARCHER])
def test_the_page_draws_the_graph_with_links(chain, client, role):
    client.force_login(make_user(role))
    response = client.get(f"/dashboards/lineage/exports/{chain.export.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<svg class="lineage"' in page and page.count('<a class="node"') == len(Chain.__dataclass_fields__)
    assert f'href="/dashboards/batches/{chain.batch.pk}/"' in page
    assert f'href="/admin/exports/exportrun/{chain.export.pk}/change/"' in page
    assert f'href="/admin/checkpoints/checkpoint/{chain.new_policy.pk}/change/"' in page
    assert f'href="/dashboards/lineage/batches/{chain.next_batch.pk}/"' in page
    assert f'href="/api/v1/lineage/exports/{chain.export.pk}/"' in page
    assert "policy-v1-ppo" in page and "reward gain +0.375" in page and "accuracy 75.0%" in page


def test_every_text_is_escaped(chain, client):
    Batch.objects.filter(pk=chain.next_batch.pk).update(name='<script>alert("x")</script>')
    client.force_login(make_user(Role.ADMIN))
    page = client.get(f"/dashboards/lineage/checkpoints/{chain.new_policy.pk}/").content.decode()
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_an_annotator_gets_403(chain, client, client_for):
    annotator = make_user(Role.ANNOTATOR)
    assert client_for(annotator).get(f"/api/v1/lineage/batches/{chain.batch.pk}/").status_code == 403
    client.force_login(annotator)
    assert client.get(f"/dashboards/lineage/batches/{chain.batch.pk}/").status_code == 403


def test_an_unknown_id_or_kind_is_a_404_with_a_message(client, client_for):
    researcher = make_user(Role.RESEARCHER)
    api = client_for(researcher)
    response = api.get("/api/v1/lineage/batches/999999/")
    assert (response.status_code, response.json()) == (404, {"detail": "No batch with id 999999."})
    response = api.get("/api/v1/lineage/prompts/1/")
    assert response.status_code == 404
    assert response.json()["detail"].startswith("Lineage starts from one of: batches, exports, training-runs")
    client.force_login(researcher)
    page = client.get(reverse("dashboard-lineage", args=["training-runs", 424242]))
    assert page.status_code == 404 and "No training run with id 424242." in page.content.decode()
