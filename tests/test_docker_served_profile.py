"""docker-compose.yml's `served` profile: one `vllm serve` per checkpoint, and a sampler worker that calls them.

Read statically, as tests/test_docker_compose.py reads the file. The servers must sample with vLLM's
neutral defaults (`--generation-config vllm`): otherwise the model's generation_config.json changes
the sampling of every request that leaves a parameter out.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_docker_compose import (
    REPO,
    SERVED_WORKER,
    celery_workers,
    command_segments,
    default_stack,
    dockerfile_instructions,
    environment,
    gpu_devices,
    load_compose,
    mounts,
    option_values,
    worker_queues,
)
from tests.test_docker_gpu_workers import LIVE_QUEUE, device_default

SERVED_PROFILE = "served"
SERVED_SERVERS = ("serve-a", "serve-b")
SAMPLER_DOCKERFILE = REPO / "docker" / "sampler.Dockerfile"
CHECKPOINTS_VOLUME = "checkpoints"
SERVER_PORT = "8000"
# A compose-time required variable: compose interpolates every service, in a profile or not.
COMPOSE_REQUIRED = re.compile(r"(?<!\$)\$\{(\w+):?\?")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return load_compose()["services"]


def serve_command(service: dict[str, Any]) -> list[str]:
    """The `vllm serve MODEL ...` tokens a server runs."""
    serving = [tokens for tokens in command_segments(service) if tokens[:2] == ["vllm", "serve"]]
    assert len(serving) == 1, f"expected one `vllm serve` command, got {command_segments(service)}"
    return serving[0]


def base_image(dockerfile: Path) -> str:
    return next(args[0] for instruction, args in dockerfile_instructions(dockerfile) if instruction == "FROM")


def test_the_profile_has_two_servers_and_a_worker(services: dict[str, Any]) -> None:
    in_profile = {name for name, service in services.items() if SERVED_PROFILE in (service.get("profiles") or [])}
    assert in_profile == {*SERVED_SERVERS, SERVED_WORKER}


def test_a_plain_up_starts_none_of_the_profile(services: dict[str, Any]) -> None:
    started = default_stack(services)
    assert not {*SERVED_SERVERS, SERVED_WORKER} & set(started)
    for name, service in started.items():
        needs = set(service.get("depends_on") or ())
        assert not needs - set(started), f"{name} (default stack) depends on {sorted(needs - set(started))}"


def required_variables(service: dict[str, Any]) -> set[str]:
    return set(COMPOSE_REQUIRED.findall(yaml.safe_dump(service)))


def test_a_plain_up_needs_none_of_the_profiles_variables(services: dict[str, Any]) -> None:
    """Compose interpolates every service before it picks the profiles, so a `${VAR:?}` in the profile that the
    default stack does not also require (SECRET_KEY) would stop a plain `docker compose up`."""
    default = {var for service in default_stack(services).values() for var in required_variables(service)}
    for name in (*SERVED_SERVERS, SERVED_WORKER):
        extra = required_variables(services[name]) - default
        assert not extra, (
            f"{name}: requires {sorted(extra)} at compose time, even without --profile {SERVED_PROFILE}; "
            f"check them in the container's shell ($${{VAR:?}}) instead"
        )


@pytest.mark.parametrize("name", SERVED_SERVERS)
def test_servers_sample_with_vllms_defaults(services: dict[str, Any], name: str) -> None:
    tokens = serve_command(services[name])
    assert option_values(tokens, "--generation-config") == ["vllm"], (
        f"{name}: `vllm serve` needs --generation-config vllm, or the model's generation_config.json "
        f"sets the sampling defaults"
    )


@pytest.mark.parametrize("name", SERVED_SERVERS)
def test_servers_serve_a_checkpoint_from_the_checkpoints_volume(services: dict[str, Any], name: str) -> None:
    service = services[name]
    model = serve_command(service)[2]
    mounted = mounts(service).get(CHECKPOINTS_VOLUME, "")
    assert mounted, f"{name}: does not mount the {CHECKPOINTS_VOLUME} volume"
    assert model.startswith(f"{mounted.rstrip('/')}/"), (
        f"{name}: serves {model!r}, which is not in the checkpoints volume at {mounted}"
    )


@pytest.mark.parametrize("name", SERVED_SERVERS)
def test_servers_listen_where_the_registry_points(services: dict[str, Any], name: str) -> None:
    tokens = serve_command(services[name])
    assert option_values(tokens, "--port") == [SERVER_PORT], f"{name}: must listen on {SERVER_PORT}"
    assert option_values(tokens, "--host") == ["0.0.0.0"], f"{name}: must listen on the compose network"  # noqa: S104
    assert option_values(tokens, "--served-model-name"), f"{name}: needs --served-model-name"
    health = " ".join(services[name].get("healthcheck", {}).get("test", []))
    assert f":{SERVER_PORT}/health" in health, f"{name}: its healthcheck must ask vLLM's /health"


def test_servers_serve_different_model_names(services: dict[str, Any]) -> None:
    names = [environment(services[name]).get("SERVED_MODEL_NAME") for name in SERVED_SERVERS]
    assert all(names) and len(set(names)) == len(names), f"served model names must differ: {names}"


def test_servers_run_the_sampler_images_vllm(services: dict[str, Any]) -> None:
    """One vLLM release reads our checkpoints (tests/test_gpu_images.py); the servers run that one."""
    expected = base_image(SAMPLER_DOCKERFILE)
    for name in SERVED_SERVERS:
        assert services[name].get("image") == expected, f"{name}: runs {services[name].get('image')}, not {expected}"


def test_servers_get_a_gpu_each(services: dict[str, Any]) -> None:
    gpus = []
    for name in SERVED_SERVERS:
        devices = gpu_devices(services[name])
        assert devices and services[name].get("shm_size"), f"{name}: needs a GPU and shm_size"
        gpus += [gpu for device in devices for gpu in device_default(device)]
    assert len(gpus) == len(set(gpus)) == len(SERVED_SERVERS), f"the servers share GPUs by default: {gpus}"


def test_the_served_worker_calls_the_servers(services: dict[str, Any]) -> None:
    worker = services[SERVED_WORKER]
    assert environment(worker).get("SAMPLER_ENGINE") == "openai"
    assert not gpu_devices(worker), f"{SERVED_WORKER}: sends HTTP requests and needs no GPU"
    assert worker.get("build", {}).get("dockerfile") == "docker/web.Dockerfile"
    depends_on = worker.get("depends_on") or {}
    for server in SERVED_SERVERS:
        assert depends_on.get(server, {}).get("condition") == "service_healthy", (
            f"{SERVED_WORKER}: must wait until {server} has loaded its checkpoint"
        )


def test_the_served_worker_consumes_the_sampling_queues(services: dict[str, Any]) -> None:
    """The same queues as the in-process samplers: the tasks are routed by name, whichever engine runs them."""
    in_process = {
        q for name in ("sampler", "sampler-live") for t in celery_workers(services[name]) for q in worker_queues(t)
    }
    served = {q for t in celery_workers(services[SERVED_WORKER]) for q in worker_queues(t)}
    assert served == in_process == {"sampler", LIVE_QUEUE}
