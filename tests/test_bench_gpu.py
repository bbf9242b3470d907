"""The GPU check (bench/gpu) cannot rot: its dry mode runs every section on CPU and each one yields its figures."""

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.gpu import hardware
from bench.gpu.hardware import detect_device, stub_absent_modules
from bench.gpu.models import Workspace
from bench.gpu.profiles import DRY
from bench.gpu.runner import Budget, Context, NotRun, run_section

ROOT = Path(__file__).resolve().parent.parent
MEASURED = ("sampling", "live_pair", "reward_mfu", "ppo", "sampling_large")


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, float]:
    out = tmp_path_factory.mktemp("gpu-check")
    env = {
        **os.environ,
        "OUT": str(out),
        "GPU_CHECK_PYTHON": sys.executable,
        "GPU_CHECK_PEAK_TFLOPS": "1",  # a CPU is in no table: peaks given, so every ratio is computed
        "GPU_CHECK_HBM_TBPS": "0.05",
    }
    started = time.perf_counter()
    done = subprocess.run(
        ["bash", "bench/gpu/run.sh", "--dry"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    wall = time.perf_counter() - started
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = out.glob("*.json")
    return json.loads(path.read_text()), path, wall


def test_the_dry_run_records_where_and_what_it_ran(dry_run: tuple[dict[str, Any], Path, float]) -> None:
    record, path, wall = dry_run
    today = datetime.now(UTC).date().isoformat()
    assert path.name == f"gpu-{record['date']}-cpu-dry.json" and record["date"] <= today
    assert record["dry"] is True and record["complete"] is True and record["wall_s"] < wall
    assert record["device"]["name"] == "cpu" and record["device"]["peaks_from"] == "env"
    assert record["versions"]["torch"] and record["versions"]["transformers"] and record["versions"]["python"]
    assert isinstance(record["commit"], str) and record["commit"]
    assert record["dtype"] == "float32"
    assert set(record["models"]) == {DRY.model, DRY.large_model}


def test_every_section_of_the_dry_run_gives_its_figures(dry_run: tuple[dict[str, Any], Path, float]) -> None:
    sections = dry_run[0]["sections"]
    for name in MEASURED:
        assert sections[name]["run"] is True and "error" not in sections[name], (name, sections[name])
    for name in ("sampling", "sampling_large"):
        runs = sections[name]["figures"]["runs"]
        assert [run["batch_size"] for run in runs] == list(DRY.batch_sizes)
        for run in runs:
            assert all(positive(run[key]) for key in ("tokens_per_s", "roofline_tokens_per_s", "share_of_roofline"))
    live = sections["live_pair"]["figures"]
    assert live["pairs"] == DRY.pair_repeats and positive(live["p50_ms"])
    reward = sections["reward_mfu"]["figures"]
    assert positive(reward["tokens_per_s"]) and positive(reward["mfu"]) and reward["steps_timed"] >= 1
    ppo = sections["ppo"]["figures"]
    assert set(ppo["seconds"]) == {"generation", "scoring", "passes", "optimisation"}
    assert all(positive(value) for value in ppo["seconds"].values())
    assert sum(ppo["shares"].values()) == pytest.approx(1.0, abs=1e-3)


def test_vllm_is_measured_where_installed_and_says_why_not_elsewhere(
    dry_run: tuple[dict[str, Any], Path, float],
) -> None:
    vllm = dry_run[0]["sections"]["vllm"]
    assert vllm["run"] is False and vllm["reason"]  # the dry run is on CPU; vLLM needs a GPU either way


def test_a_failing_section_is_recorded_and_a_spent_budget_skips(tmp_path: Path) -> None:
    device = detect_device(dry=True)
    context = Context(device, DRY, Workspace(tmp_path, device.torch_device), Budget(60))

    def broken(context: Context) -> dict[str, Any]:
        raise RuntimeError("out of memory")

    def absent(context: Context) -> dict[str, Any]:
        raise NotRun("no GPU")

    failed = run_section("broken", broken, context)
    assert failed["run"] is True and failed["error"] == "RuntimeError: out of memory" and "seconds" in failed
    not_run = run_section("absent", absent, context)
    assert not_run["run"] is False and not_run["reason"] == "no GPU" and "figures" not in not_run
    spent = Context(device, DRY, context.workspace, Budget(0))
    skipped = run_section("late", lambda context: {"figure": 1}, spent)
    assert skipped["run"] is False and skipped["reason"].startswith("time budget")


def test_a_missing_package_gets_an_empty_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ("gpu_check_absent", "gpu_check_absent.parquet")
    monkeypatch.setattr(hardware, "STUBBED_WHEN_ABSENT", {"gpu_check_absent": names, "json": ("json",)})
    try:
        assert stub_absent_modules() == ["gpu_check_absent"]
        import gpu_check_absent.parquet as stand_in  # type: ignore[import-not-found]

        assert stand_in is sys.modules["gpu_check_absent.parquet"] and hasattr(sys.modules["json"], "dumps")
    finally:
        for name in names:
            sys.modules.pop(name, None)
