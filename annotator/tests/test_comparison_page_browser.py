"""The comparison page in a real headless Chromium, driven by the keyboard as annotators work."""

import pytest

from backend.accounts.roles import Role
from backend.batches.models import Annotation, Batch, Focus
from backend.batches.services.annotations import assignment_lease_next
from backend.batches.services.batches import batch_create, batch_open
from backend.checkpoints.services import checkpoint_register
from sampler import services as sampling
from sampler.engines.tiny import build_tiny_checkpoint
from tests.factories import make_batch, make_comparison, make_prompt, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ann(db):
    return make_user(Role.ANNOTATOR, username="ann", password="a-long-password")


def open_batch(page, live_server, batch) -> None:
    page.goto(f"{live_server.url}/")
    page.click(f"article[data-batch='{batch.pk}'] a.button")
    page.wait_for_selector("#comparison:not([hidden]), #writer:not([hidden]), #empty:not([hidden])")


def test_a_pool_batch_judged_by_keyboard_moves_to_the_next_item(page, live_server, sign_in, ann, screenshot):
    batch = make_batch(comparisons=2)
    sign_in(page, "ann")
    screenshot(page, "01-home")
    open_batch(page, live_server, batch)
    first_prompt = page.inner_text("#prompt")
    screenshot(page, "02-comparison")
    page.keyboard.press("b")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.querySelector('#prompt').innerText !== {first_prompt!r}")
    assert page.inner_text("#status") in ("", "Saved.")
    page.keyboard.press("a")
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    page.wait_for_selector("#empty:not([hidden])")
    judged = list(Annotation.objects.order_by("id").values_list("choice", "strength"))
    assert judged == [("b", "better"), ("a", "negligibly_better_or_unsure")]
    assert all(t > 0 for t in Annotation.objects.values_list("time_spent_ms", flat=True))


def test_a_safety_batch_needs_the_label_and_refuses_the_forbidden_one(page, live_server, sign_in, ann, screenshot):
    batch = make_batch(comparisons=1, focus=Focus.SAFETY)
    sign_in(page, "ann")
    open_batch(page, live_server, batch)
    page.keyboard.press("a")
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    assert "Mark each response safe or unsafe" in page.inner_text("#refusal")
    page.keyboard.press("w")  # A, the chosen one, unsafe
    page.keyboard.press("o")  # B safe
    refusal = page.inner_text("#refusal")
    assert "unsafe while the other is safe" in refusal
    screenshot(page, "03-safety-refused")
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    assert not Annotation.objects.exists(), "a forbidden judgement reached the server"
    page.keyboard.press("q")  # A safe
    page.keyboard.press("p")  # B unsafe
    assert "Chosen is safe, the other is unsafe" in page.inner_text("#safety-summary")
    page.keyboard.press("Enter")
    page.wait_for_selector("#empty:not([hidden])")
    assert Annotation.objects.get().safety_label == "chosen_safe_other_unsafe"


def test_html_in_a_response_is_shown_as_text(page, live_server, sign_in, ann, screenshot):
    batch = make_batch(comparisons=0, open_it=False)
    hostile = 'Look: <script>window.__pwned = 1</script> and <img src=x onerror="window.__pwned = 2">'
    make_comparison(batch, texts=(hostile, "```python\nprint('<b>kept</b>')\n```"))
    batch_open(batch=batch)
    sign_in(page, "ann")
    open_batch(page, live_server, batch)
    bodies = page.inner_text("#response-a") + page.inner_text("#response-b")
    assert "<script>window.__pwned = 1</script>" in bodies
    assert '<img src=x onerror="window.__pwned = 2">' in bodies
    assert page.evaluate("window.__pwned") is None
    assert page.locator(".response-body img, .response-body script").count() == 0
    assert page.locator(".response-body pre code").count() == 1
    screenshot(page, "04-html-as-text")


def test_a_reload_mid_judgement_keeps_the_draft(page, live_server, sign_in, ann):
    batch = make_batch(comparisons=1)
    sign_in(page, "ann")
    open_batch(page, live_server, batch)
    page.keyboard.press("b")
    page.keyboard.press("3")
    page.keyboard.press("c")
    page.keyboard.type("B explains it better")
    page.reload()
    page.wait_for_selector("#comparison:not([hidden])")
    assert page.is_checked("input[name=choice][value=b]")
    assert page.is_checked("input[name=strength][value=slightly_better]")
    assert page.input_value("#comment") == "B explains it better"


def test_a_lost_reply_is_retried_with_the_same_key_and_stored_once(page, live_server, sign_in, ann):
    batch = make_batch(comparisons=1)
    sign_in(page, "ann")
    open_batch(page, live_server, batch)
    replies_lost: list[bool] = []

    def lose_first_reply(route):
        if not replies_lost:
            route.fetch()  # the server stores the annotation...
            replies_lost.append(True)
            route.abort("connectionreset")  # ...but the browser never hears back
        else:
            route.continue_()

    page.route("**/submit/", lose_first_reply)
    page.keyboard.press("a")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_selector("#empty:not([hidden])", timeout=30_000)
    assert replies_lost and Annotation.objects.count() == 1


def test_unsent_work_survives_a_reload_and_is_sent_once(page, live_server, sign_in, ann):
    batch = make_batch(comparisons=2)
    sign_in(page, "ann")
    open_batch(page, live_server, batch)
    page.route("**/submit/", lambda route: route.abort("internetdisconnected"))
    page.keyboard.press("a")
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#status').classList.contains('warn')")
    page.unroute("**/submit/")
    page.reload()
    page.wait_for_selector("#comparison:not([hidden])")
    page.wait_for_function("!document.querySelector('#status').classList.contains('warn')")
    assert list(Annotation.objects.values_list("choice", "strength")) == [("a", "significantly_better")]


def test_another_annotators_assignment_does_not_open(page, live_server, sign_in, ann):
    batch = make_batch(comparisons=1)
    owner = make_user(Role.ANNOTATOR, username="owner", password="a-long-password")
    theirs = assignment_lease_next(batch=batch, annotator=owner)
    assert theirs is not None
    sign_in(page, "ann")
    response = page.goto(f"{live_server.url}/work/assignments/{theirs.pk}/")
    assert response.status == 404


@pytest.fixture
def writing_batch(tmp_path):
    checkpoints = [
        checkpoint_register(
            name=f"tiny-{seed}", path=str(build_tiny_checkpoint(tmp_path / str(seed), seed=seed, eos_boost=4.0))
        )[0]
        for seed in (1, 2)
    ]
    batch, _ = batch_create(
        name="write-your-own",
        target_comparisons=50,
        created_by=None,
        checkpoint_ids=[c.pk for c in checkpoints],
        temperatures=[0.7, 1.0],
        max_new_tokens=16,
        annotators_write_prompts=True,
        guidelines="Write prompts you would really ask; compare the two answers.",
    )
    seed_prompt = make_prompt("A first pool prompt?")
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.SAMPLING)
    sampling.batch_sample_chunk(batch_id=batch.pk, prompt_ids=[seed_prompt.pk])
    return batch_open(batch=batch)


def test_write_a_prompt_judge_it_and_continue_the_dialogue(page, live_server, sign_in, ann, writing_batch, screenshot):
    sign_in(page, "ann")
    open_batch(page, live_server, writing_batch)
    screenshot(page, "05-write-a-prompt")
    page.fill("#writer-text", "Give me a name for a grey cat.")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#comparison:not([hidden])")
    assert page.inner_text("#prompt") == "Give me a name for a grey cat."
    page.keyboard.press("a")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_selector("#after:not([hidden])")
    screenshot(page, "06-after-judging")
    page.fill("#continue-text", "Why that name?")
    page.keyboard.press("Control+Enter")
    page.wait_for_function("document.querySelector('#prompt').innerText === 'Why that name?'")
    turns = page.locator("#dialogue .turn")
    assert turns.count() == 2
    assert "Give me a name for a grey cat." in turns.nth(0).inner_text()
    screenshot(page, "07-dialogue-continued")
    page.keyboard.press("b")
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_selector("#after:not([hidden])")
    assert Annotation.objects.filter(annotator=ann).count() == 2


def test_at_the_quota_the_page_says_why_and_a_failed_pair_gives_a_plain_reason(
    page, live_server, sign_in, ann, writing_batch
):
    Batch.objects.filter(pk=writing_batch.pk).update(annotator_quota=1)
    sign_in(page, "ann")
    open_batch(page, live_server, writing_batch)
    page.fill("#writer-text", "Name a river.")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#comparison:not([hidden])")
    page.keyboard.press("a")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_selector("#after:not([hidden])")
    page.fill("#continue-text", "And a longer one?")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#empty:not([hidden])")
    assert "limit of 1 judgements" in page.inner_text("#status")

    Batch.objects.filter(pk=writing_batch.pk).update(annotator_quota=None)
    gone = checkpoint_register(name="tiny-gone", path="/nowhere/tiny-gone")[0]
    writing_batch.checkpoints.set([writing_batch.checkpoints.first(), gone])
    open_batch(page, live_server, writing_batch)
    page.fill("#writer-text", "Name a lake.")
    page.keyboard.press("Control+Enter")
    page.wait_for_function("document.querySelector('#status').innerText.includes('could not be sampled')")
    assert "/nowhere" not in page.content() and not page.is_hidden("#writer")


def test_the_page_works_at_tablet_width(page, live_server, sign_in, ann, screenshot):
    batch = make_batch(comparisons=1)
    page.set_viewport_size({"width": 600, "height": 960})
    sign_in(page, "ann")
    open_batch(page, live_server, batch)
    a_box = page.locator("#side-a").bounding_box()
    b_box = page.locator("#side-b").bounding_box()
    assert b_box["y"] > a_box["y"] + a_box["height"] - 1, "responses should stack on a narrow screen"
    assert a_box["width"] <= 600
    screenshot(page, "08-tablet")
