"""The GPU workers of docker-compose.yml can start: one GPU process each, never in Celery's prefork pool.

Prefork runs tasks in daemonic child processes, and a daemonic process may not start children
("daemonic processes are not allowed to have children"), which vLLM and torch do. Read statically,
as tests/test_docker_compose.py reads the file; tests/test_docker_sampler_worker.py starts one.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.test_docker_compose import (
    celery_workers,
    default_stack,
    environment,
    gpu_devices,
    load_compose,
    option_values,
    worker_queues,
)

GPU_POOLS = frozenset({"solo", "threads"})
CELERY_DEFAULT_POOL = "prefork"
LIVE_WORKER = "sampler-live"
LIVE_QUEUE = "sampler_live"
LIVE_TASK = "sampler.tasks.live_pair_sample"
# The engine core in a child process (what solo allows), so that shutting an engine down frees its GPU memory;
# spawned tensor-parallel workers, not forks of a Celery process.
VLLM_PROCESSES = {"VLLM_ENABLE_V1_MULTIPROCESSING": "1", "VLLM_WORKER_MULTIPROC_METHOD": "spawn"}
COMPOSE_DEFAULT = re.compile(r"^\$\{\w+:-(?P<default>[^}]*)\}$")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return load_compose()["services"]


def worker_pool(tokens: list[str]) -> str:
    """The pool a `celery worker` command runs: -P/--pool, else Celery's default."""
    pools = option_values(tokens, "-P", "--pool")
    return pools[-1] if pools else CELERY_DEFAULT_POOL


def pool_problem(tokens: list[str]) -> str | None:
    """Why a GPU worker's command line cannot run one GPU task in a process that may start children."""
    pool = worker_pool(tokens)
    if pool not in GPU_POOLS:
        return f"runs the {pool} pool, whose daemonic children may not start the processes vLLM and torch start"
    if pool == "threads" and option_values(tokens, "-c", "--concurrency") != ["1"]:
        return "runs the threads pool without --concurrency=1, so two tasks would share the GPU"
    return None


def gpu_workers(stack: dict[str, Any]) -> dict[str, list[list[str]]]:
    """Every service that reserves a GPU and runs a Celery worker, with its worker commands."""
    return {name: celery_workers(s) for name, s in stack.items() if gpu_devices(s) and celery_workers(s)}


def device_default(device: dict[str, Any]) -> list[str]:
    """A reservation's GPU ids with `${VAR:-N}` read as its default N (what a plain `docker compose up` gets)."""
    ids = [str(i) for i in device.get("device_ids", [])]
    return [match["default"] if (match := COMPOSE_DEFAULT.match(i)) else i for i in ids]


def test_the_check_refuses_the_pool_the_gpu_sampler_used_to_run() -> None:
    before = ["celery", "-A", "config", "worker", "-Q", "sampler", "--concurrency=1", "--prefetch-multiplier=1"]
    assert pool_problem(before) is not None
    assert pool_problem([*before, "--pool=threads"]) is None
    assert pool_problem(["celery", "-A", "config", "worker", "-P", "threads", "-c", "4"]) is not None


def test_the_gpu_workers_are_found(services: dict[str, Any]) -> None:
    assert {"sampler", LIVE_WORKER, "trainer"} <= set(gpu_workers(services))


def test_no_gpu_worker_runs_prefork(services: dict[str, Any]) -> None:
    problems = {
        name: problem
        for name, commands in gpu_workers(services).items()
        for tokens in commands
        if (problem := pool_problem(tokens))
    }
    assert not problems, f"GPU workers that cannot start their GPU work: {problems}"


@pytest.mark.parametrize("name", ["sampler", LIVE_WORKER, "trainer"])
def test_gpu_worker_runs_solo(services: dict[str, Any], name: str) -> None:
    assert [worker_pool(tokens) for tokens in celery_workers(services[name])] == ["solo"], (
        f"{name}: must run --pool=solo, one task at a time in the worker's own process"
    )


def test_vllm_workers_run_the_engine_core_in_a_child_they_can_end(services: dict[str, Any]) -> None:
    vllm_workers = [n for n in gpu_workers(services) if environment(services[n]).get("SAMPLER_ENGINE") == "vllm"]
    assert {"sampler", LIVE_WORKER} <= set(vllm_workers)
    for name in vllm_workers:
        env = environment(services[name])
        wrong = {key: env.get(key) for key, value in VLLM_PROCESSES.items() if env.get(key) != value}
        assert not wrong, f"{name}: needs {VLLM_PROCESSES}; has {wrong}"


def test_live_pairs_have_a_worker_of_their_own(services: dict[str, Any]) -> None:
    """Live pairs go to one queue, which only the live worker consumes, and it consumes nothing else."""
    tokens = celery_workers(services[LIVE_WORKER])
    assert [worker_queues(t) for t in tokens] == [{LIVE_QUEUE}], f"{LIVE_WORKER}: must consume only {LIVE_QUEUE}"
    assert option_values(tokens[0], "-c", "--concurrency") == ["1"], f"{LIVE_WORKER}: must run --concurrency=1"
    sharing = [
        name
        for name, service in default_stack(services).items()
        if name != LIVE_WORKER and any(LIVE_QUEUE in worker_queues(t) for t in celery_workers(service))
    ]
    assert not sharing, f"{sharing} also consume {LIVE_QUEUE}: a live pair could wait behind their work"


def test_live_pair_tasks_are_routed_to_the_live_worker() -> None:
    from config.celery import app

    assert app.amqp.router.route({}, LIVE_TASK)["queue"].name == LIVE_QUEUE


def test_default_stack_gpu_services_get_a_gpu_each(services: dict[str, Any]) -> None:
    """vLLM reserves most of its GPU when it starts, so a second GPU process on that GPU would not start."""
    owners: dict[str, list[str]] = {}
    for name, service in default_stack(services).items():
        for device in gpu_devices(service):
            assert device_default(device), f"{name}: reserve a GPU by device_ids, not `count` (all take GPU 0)"
            for gpu in device_default(device):
                owners.setdefault(gpu, []).append(name)
    shared = {gpu: names for gpu, names in owners.items() if len(names) > 1}
    assert not shared, f"GPU services that share a GPU by default: {shared}"
