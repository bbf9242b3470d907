"""Annotators never receive model identity: every response an annotator can reach is scanned for it.

The batch is sampled from checkpoints with distinctive names at distinctive temperatures and seeds, so
any leak of provenance (name, path, temperature, seed, which side came from which model) shows up.
"""

import json
import re

import pytest
from django.test import Client

from backend.batches.services.batches import batch_create, batch_open
from backend.batches.services.comparisons import ResponseInput, comparison_create
from backend.checkpoints.services import checkpoint_register
from tests.factories import make_prompt

pytestmark = pytest.mark.django_db

NAMES = ("llama-secret-alpha-7b", "llama-secret-beta-7b")
TEMPERATURES = (0.613, 1.387)
SEED = 918273
SECRETS = [*NAMES, "/models/secret", "0.613", "1.387", str(SEED), "temperature", "checkpoint", "first_response"]


@pytest.fixture
def batch():
    alpha, beta = (checkpoint_register(name=name, path=f"/models/secret/{name}")[0] for name in NAMES)
    batch, _ = batch_create(
        name="identity-scan",
        target_comparisons=3,
        created_by=None,
        checkpoint_ids=[alpha.pk, beta.pk],
        temperatures=list(TEMPERATURES),
    )
    for number in range(3):
        comparison_create(
            batch=batch,
            prompt=make_prompt(f"Question {number}?"),
            first=ResponseInput(checkpoint=alpha, text=f"alpha says {number}", temperature=TEMPERATURES[0], seed=SEED),
            second=ResponseInput(checkpoint=beta, text=f"beta says {number}", temperature=TEMPERATURES[1], seed=SEED),
        )
    return batch_open(batch=batch)


def _as_pattern(secret: str) -> str:
    """A number counts only standing alone: "1.387" inside a timestamp's "21.387908" is not a temperature."""
    if secret.replace(".", "").isdigit():
        return rf"(?<![\d.]){re.escape(secret)}(?!\d)"
    return re.escape(secret)


def assert_no_identity(label: str, content: bytes) -> None:
    text = content.decode()
    for secret in SECRETS:
        assert not re.search(_as_pattern(secret), text), f"{secret!r} leaked to an annotator in {label}: {text[:400]}"


def test_nothing_an_annotator_reaches_names_the_models(batch, annotator):
    browser = Client()
    browser.force_login(annotator)
    api = "/api/v1"
    seen: list[tuple[str, bytes]] = []

    def visit(method: str, url: str, data: dict | None = None) -> dict:
        response = browser.generic(method, url, data=json.dumps(data or {}), content_type="application/json")
        assert response.status_code < 400, (url, response.status_code, response.content[:300])
        seen.append((f"{method} {url}", response.content))
        return response.json() if response["Content-Type"].startswith("application/json") else {}

    leased = visit("POST", f"{api}/batches/{batch.pk}/next/")
    visit("GET", f"{api}/assignments/{leased['id']}/")
    submitted = {"choice": "b", "strength": "better", "idempotency_key": "scan-1"}
    visit("POST", f"{api}/assignments/{leased['id']}/submit/", submitted)
    skipped = visit("POST", f"{api}/batches/{batch.pk}/next/")
    visit("POST", f"{api}/assignments/{skipped['id']}/skip/", {"reason": "identical", "idempotency_key": "scan-2"})
    third = visit("POST", f"{api}/batches/{batch.pk}/next/")
    for url in [
        "/me/",
        "/batches/",
        f"/batches/{batch.pk}/",
        "/annotations/",
        "/prompts/",
    ]:
        visit("GET", api + url)
    for page in ["/", f"/work/batches/{batch.pk}/", f"/work/assignments/{third['id']}/"]:
        visit("GET", page)

    assert len(seen) == 14
    for label, content in seen:
        assert_no_identity(label, content)


# --- every answer an annotator can get, errors and live pairs included ---------------------------------------
#
# Real sampling on tiny checkpoints with canary names, paths and temperatures; the seeds and the engine name are
# read back from the stored responses. One writing batch has a checkpoint whose path does not exist, so its live
# pair fails in the engine with an error that names the path.

CANARY = "q7zx"
CANARY_NAMES = (f"ckpt-canary-alpha-{CANARY}", f"ckpt-canary-beta-{CANARY}", f"ckpt-canary-gone-{CANARY}")
CANARY_TEMPERATURES = [0.61379, 1.38711]
CANARY_SEED = 7350199182736455
MISSING_PATH = f"/nonexistent-canary-{CANARY}/weights-canary-gone-{CANARY}"
# Words that name provenance: no annotator JSON or page may carry them (the public schema and the browsable
# API's pages describe the staff endpoints, so they are held to the values only).
FIELD_WORDS = ["temperature", "checkpoint", "first_response", "engine"]


@pytest.fixture(scope="module")
def canary_dirs(tmp_path_factory) -> list[str]:
    from sampler.engines.tiny import build_tiny_checkpoint

    root = tmp_path_factory.mktemp(f"canary-root-{CANARY}")
    return [
        str(build_tiny_checkpoint(root / f"weights-canary-{side}-{CANARY}", seed=seed, eos_boost=4.0))
        for side, seed in (("alpha", 1), ("beta", 2))
    ]


@pytest.fixture
def canary_world(canary_dirs, settings, django_capture_on_commit_callbacks):
    """A pool batch sampled from the canaries, a writing batch with a quota of 2, and a writing batch that fails."""
    from backend.batches.models import Batch
    from sampler.services import batch_sample_chunk, batch_start_sampling

    settings.SAMPLER_ENGINE, settings.SAMPLER_ENGINE_OPTIONS = "transformers", {}
    alpha, beta = (checkpoint_register(name=n, path=p)[0] for n, p in zip(CANARY_NAMES, canary_dirs, strict=False))
    gone, _ = checkpoint_register(name=CANARY_NAMES[2], path=MISSING_PATH)

    def draft(name: str, checkpoints, **options) -> Batch:
        made, _ = batch_create(
            name=name,
            target_comparisons=3,
            created_by=None,
            checkpoint_ids=[c.pk for c in checkpoints],
            temperatures=CANARY_TEMPERATURES,
            max_new_tokens=8,
            **options,
        )
        return made

    pool = draft("canary-pool", [alpha, beta])
    for number in range(3):
        make_prompt(f"Pool question {number}: how do I say thanks?")
    with django_capture_on_commit_callbacks(execute=True):
        batch_start_sampling(batch=pool, enqueue=lambda b, ids: batch_sample_chunk(batch_id=b, prompt_ids=ids))
    writing = draft("canary-writing", [alpha, beta], annotators_write_prompts=True, annotator_quota=2)
    broken = draft("canary-broken", [alpha, gone], annotators_write_prompts=True)
    for number, (batch, other) in enumerate([(writing, beta), (broken, gone)]):  # one pair each, stored by hand
        comparison_create(
            batch=batch,
            prompt=make_prompt(f"Seeded question {number}?"),
            first=ResponseInput(checkpoint=alpha, text="one", temperature=CANARY_TEMPERATURES[0], seed=CANARY_SEED),
            second=ResponseInput(checkpoint=other, text="two", temperature=CANARY_TEMPERATURES[1], seed=CANARY_SEED),
        )
    return {"pool": batch_open(batch=pool), "writing": batch_open(batch=writing), "broken": batch_open(batch=broken)}


def _secret_values() -> list[str]:
    """Every checkpoint's name and path (and the path's last part), every temperature, seed and engine name."""
    from backend.batches.models import Response
    from backend.checkpoints.models import Checkpoint

    values = {str(t) for t in CANARY_TEMPERATURES} | {MISSING_PATH, "transformers"}
    for name, path in Checkpoint.objects.values_list("name", "path"):
        values |= {name, path, path.rstrip("/").rsplit("/", 1)[-1]}
    for temperature, seed, engine in Response.objects.values_list("temperature", "seed", "engine"):
        values |= {str(temperature), *([str(seed)] if seed is not None else []), *([engine] if engine else [])}
    return sorted(values)


class Walk:
    """An annotator's browser (session auth, as the page uses the API): every answer is kept to be scanned."""

    def __init__(self, user, capture) -> None:
        self.browser = Client()
        self.browser.force_login(user)
        self.capture = capture
        self.seen: list[tuple[str, int, bytes, bool]] = []  # label, status, body, held to the field words

    def call(self, method: str, url: str, data: dict | None = None, *, expect: int | None = None, **kw):
        html = kw.pop("html", False)
        headers = {"HTTP_ACCEPT": "text/html"} if html else {}
        with self.capture(execute=True):  # the live pair's task runs on commit, after the answer (eager Celery)
            response = self.browser.generic(
                method, url, data=json.dumps(data or {}), content_type="application/json", **headers
            )
        body = b"".join(response.streaming_content) if response.streaming else response.content
        label = f"{method} {url}{' (html)' if html else ''}"
        assert expect is None or response.status_code == expect, (label, response.status_code, body[:300])
        strict = not html and not url.startswith(("/api/v1/schema", "/api/v1/docs", "/api/v1/redoc"))
        self.seen.append((label, response.status_code, body, strict))
        is_json = response.get("Content-Type", "").startswith("application/json")
        return response.json() if is_json and body else {}

    def page(self, url: str) -> None:
        self.call("GET", url)


def _annotator_flow(walk: Walk, world) -> dict[str, int]:
    """The annotator's whole loop, each error path included; returns ids for the sweep."""
    api, pool, writing, broken = "/api/v1", world["pool"].pk, world["writing"].pk, world["broken"].pk
    first = walk.call("POST", f"{api}/batches/{pool}/next/", expect=200)
    walk.call("GET", f"{api}/assignments/{first['id']}/", expect=200)
    walk.call("POST", f"{api}/assignments/{first['id']}/submit/", {"choice": "c"}, expect=400)
    judged = {"choice": "b", "strength": "better", "idempotency_key": "walk-1"}
    annotation = walk.call("POST", f"{api}/assignments/{first['id']}/submit/", judged, expect=201)
    walk.call("POST", f"{api}/assignments/{first['id']}/submit/", judged, expect=200)
    walk.call("POST", f"{api}/assignments/{first['id']}/submit/", {**judged, "idempotency_key": "x"}, expect=409)
    second = walk.call("POST", f"{api}/batches/{pool}/next/", expect=200)
    walk.call("POST", f"{api}/assignments/{second['id']}/skip/", {"reason": "nope", "idempotency_key": "s"}, expect=400)
    walk.call("POST", f"{api}/assignments/{second['id']}/skip/", {"reason": "identical", "idempotency_key": "s"})
    third = walk.call("POST", f"{api}/batches/{pool}/next/", expect=200)
    walk.call("GET", f"{api}/assignments/999999/", expect=404)
    walk.call("POST", f"{api}/assignments/999999/submit/", judged, expect=404)
    walk.call("GET", f"{api}/batches/999999/", expect=404)
    walk.call("POST", f"{api}/batches/{pool}/live-pairs/", {"text": "Hello?"}, expect=409)  # not a writing batch

    # A writing batch: a live pair, judged; the dialogue continued, judged; then the quota (2) refuses a third.
    live_url = f"{api}/batches/{writing}/live-pairs/"
    walk.call("POST", live_url, {}, expect=400)
    pending = walk.call("POST", live_url, {"text": "Name a colour.", "client_key": "walk-live-1"}, expect=202)
    done = walk.call("GET", pending["poll_url"], expect=200)
    assert done["status"] == "done", done
    walk.call("POST", live_url, {"text": "Name a colour.", "client_key": "walk-live-1"}, expect=200)  # a retry
    walk.call("POST", f"{api}/assignments/{done['assignment']['id']}/submit/", {**judged, "idempotency_key": "w-1"})
    given = walk.browser.get(f"{api}/annotations/?batch={writing}").json()
    annotation_id = (given["results"] if isinstance(given, dict) else given)[0]["id"]
    continue_url = f"{api}/annotations/{annotation_id}/continue/"
    walk.call("POST", continue_url, {}, expect=400)
    walk.call("POST", f"{api}/annotations/999999/continue/", {"next_message": "Why?"}, expect=404)
    turn = walk.call("POST", continue_url, {"next_message": "Why that one?", "client_key": "walk-turn"})
    walk.call("POST", live_url, {"prompt": 999999}, expect=404)
    follow = walk.call("GET", walk.call("POST", live_url, {"prompt": turn["id"]}, expect=202)["poll_url"])
    walk.call("POST", f"{api}/assignments/{follow['assignment']['id']}/submit/", {**judged, "idempotency_key": "w-2"})
    # Past the quota (2): a 409 whose message is scanned (sampler/tests/test_live_pairs.py tests the quota itself).
    walk.call("POST", live_url, {"text": "One more, please."})
    walk.call("POST", f"{api}/batches/{writing}/next/")

    # A live pair whose checkpoint is not there: the engine fails, and the annotator is told so, nothing more.
    failing = walk.call("POST", f"{api}/batches/{broken}/live-pairs/", {"text": "Tell me a joke."}, expect=202)
    failed = walk.call("GET", failing["poll_url"], expect=200)
    assert failed["status"] == "failed" and failed["error"], failed
    walk.call("GET", f"{api}/live-pairs/999999/", expect=404)
    return {
        "assignment_id": third["id"],
        "annotation_id": annotation["id"],
        "live_pair_id": failed["id"],
        "assignments": [first["id"], second["id"], third["id"], done["assignment"]["id"]],
    }


class _Ids(dict):
    """URL arguments: the annotator's own objects where the walk made them, 1 for anything else."""

    def __missing__(self, key: str) -> object:
        return 1


def _sweep(walk: Walk, world, ids: dict, annotator) -> None:
    """Every API endpoint there is (GET and POST), as the annotator, in JSON and as the browsable API; every page."""
    from tests.security.test_permission_matrix import api_url_names, url_for

    for batch in world.values():
        kwargs = _Ids(ids, batch_id=batch.pk, name="train.jsonl", annotator_id=annotator.pk)
        for name in sorted(api_url_names() - {"auth-token"}):
            for method in ("GET", "POST"):
                walk.call(method, url_for(name, kwargs))
                walk.call(method, url_for(name, kwargs), html=True)
    pages = ["/", "/login/", "/healthz", "/admin/", "/admin/batches/livepair/", "/dashboards/", "/dashboards/models/"]
    pages += ["/work/batches/999999/", "/work/assignments/999999/", f"/dashboards/annotators/{annotator.pk}/"]
    for batch in world.values():
        pages += [f"/work/batches/{batch.pk}/", f"/dashboards/batches/{batch.pk}/"]
    pages += [f"/work/assignments/{pk}/" for pk in ids["assignments"]]
    for page in pages:
        walk.page(page)


def test_no_answer_an_annotator_gets_names_a_model_errors_and_live_pairs_included(
    canary_world, annotator, django_capture_on_commit_callbacks
):
    walk = Walk(annotator, django_capture_on_commit_callbacks)
    ids = _annotator_flow(walk, canary_world)
    _sweep(walk, canary_world, ids, annotator)

    values = _secret_values()
    leaks = []
    for label, status, body, strict in walk.seen:
        text = body.decode(errors="replace")
        for secret in values + (FIELD_WORDS if strict else []):
            if re.search(_as_pattern(secret), text):
                leaks.append(f"{secret!r} in {label} ({status}): ...{text[max(text.find(secret) - 120, 0) :][:300]}")
    assert not leaks, "\n".join(leaks)
    # The scan meant something: the canaries were in the database, and every kind of answer was seen.
    assert any(MISSING_PATH in v for v in values) and any(len(v) > 15 and v.isdigit() for v in values)  # seeds
    statuses = {status for _, status, _, _ in walk.seen}
    assert {200, 201, 202, 400, 403, 404, 405, 409} <= statuses, statuses
    assert any(b"limit of 2 judgements" in body for _, status, body, _ in walk.seen if status == 409)  # the quota
    assert len(walk.seen) > 100
