"""docker-compose.yml describes a stack that can build and start.

No Docker engine is needed: the compose file is parsed with PyYAML and every
reference it makes (Dockerfiles, files those copy, commands, queues, settings
modules, volumes) is checked against the repository.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
SETTINGS_DIR = REPO / "backend" / "settings"

SERVICES = ("postgres", "redis", "web", "worker", "beat", "sampler", "sampler-live", "trainer")
SERVED_WORKER = "sampler-served"
APP_SERVICES = ("web", "worker", "beat", "sampler", "sampler-live", "trainer", SERVED_WORKER)
GPU_SERVICES = ("sampler", "sampler-live", "trainer")
DATA_SERVICES = ("web", "worker", "sampler", "sampler-live", "trainer", SERVED_WORKER)
DATA_VOLUMES = ("exports", "checkpoints")
DJANGO_BUILTIN_COMMANDS = frozenset({"migrate", "collectstatic"})
SKIP_DIRS = frozenset({".venv", ".git", "node_modules", "var", "__pycache__"})
REQUIREMENTS_FILE = re.compile(r"^[\w./-]*requirements[\w.-]*\.txt$")


# --- reading the compose file -------------------------------------------------


def load_compose() -> dict[str, Any]:
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE} is missing"
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose.get("services") or {}


def default_stack(services: dict[str, Any]) -> dict[str, Any]:
    """The services a plain `docker compose up` starts: those in no profile."""
    return {name: service for name, service in services.items() if not service.get("profiles")}


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, whether written as a map or a list."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Volume source -> container path, from short ("a:/b") or long syntax."""
    result = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        result[source] = target
    return result


def command_segments(service: dict[str, Any]) -> list[list[str]]:
    """The commands a service runs, one token list per `&&`-separated command.

    `sh -c "a && b"` is unwrapped; a leading `exec` is dropped.
    """
    command = service.get("command") or []
    tokens = shlex.split(command) if isinstance(command, str) else [str(t) for t in command]
    if len(tokens) >= 3 and tokens[0] in ("sh", "bash") and tokens[1] == "-c":
        tokens = shlex.split(tokens[2])
    segments: list[list[str]] = [[]]
    for token in tokens:
        if token == "&&":
            segments.append([])
        else:
            segments[-1].append(token)
    return [seg[1:] if seg[:1] == ["exec"] else seg for seg in segments if seg]


def option_values(tokens: list[str], *names: str) -> list[str]:
    """Values of an option written `--name value` or `--name=value`."""
    values = []
    for i, token in enumerate(tokens):
        for name in names:
            if token == name and i + 1 < len(tokens):
                values.append(tokens[i + 1])
            elif token.startswith(name + "="):
                values.append(token.split("=", 1)[1])
    return values


def celery_workers(service: dict[str, Any]) -> list[list[str]]:
    """The `celery ... worker` commands a service runs."""
    return [tokens for tokens in command_segments(service) if tokens[:1] == ["celery"] and "worker" in tokens]


def worker_queues(tokens: list[str]) -> set[str]:
    """The queues a `celery worker` command consumes (-Q a,b)."""
    return {queue for value in option_values(tokens, "-Q", "--queues") for queue in value.split(",")}


def gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    """The NVIDIA GPUs a service reserves (deploy.resources.reservations.devices)."""
    devices = (service.get("deploy", {}).get("resources", {}).get("reservations", {})).get("devices", [])
    return [d for d in devices if d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])]


# --- finding things in the code -----------------------------------------------


def module_source(dotted: str) -> Path | None:
    """The source file of a module: in the repo by path (nothing is imported, so
    Django settings are never loaded), else an installed package via find_spec."""
    base = REPO.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    try:
        spec = importlib.util.find_spec(dotted)
    except ModuleNotFoundError:
        return None
    return Path(spec.origin) if spec and spec.origin else None


def defines(source: Path, attr: str) -> bool:
    """Whether a module's text defines `attr` at top level (class, def or assignment)."""
    pattern = rf"^(class|def)\s+{re.escape(attr)}\b|^{re.escape(attr)}\s*(:[^=]*)?="
    return re.search(pattern, source.read_text(), re.MULTILINE) is not None


def assert_import_target(target: str, what: str) -> None:
    """`module:attr` resolves to a module that defines attr."""
    module, _, attr = target.partition(":")
    source = module_source(module)
    assert source is not None, f"{what}: module {module!r} not found"
    assert not attr or defines(source, attr), f"{what}: {source} does not define {attr!r}"


def declared_queues() -> set[str]:
    """Queue names declared as `Queue("name"...)` in backend/settings/*.py."""
    text = "".join(p.read_text() for p in sorted(SETTINGS_DIR.glob("*.py")))
    return set(re.findall(r"""Queue\(\s*["']([\w.-]+)["']""", text))


def walk_files(root: Path, name: str) -> list[Path]:
    """Files called `name` under root, skipping virtualenvs and caches."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        if name in filenames:
            found.append(Path(dirpath) / name)
    return found


def management_command_exists(command: str) -> bool:
    if command in DJANGO_BUILTIN_COMMANDS:
        return True
    return any(
        path.parent.name == "commands" and path.parent.parent.name == "management"
        for path in walk_files(REPO, f"{command}.py")
    )


# --- checking one command -----------------------------------------------------


def check_celery(tokens: list[str], where: str) -> None:
    apps = option_values(tokens, "-A", "--app")
    assert apps, f"{where}: celery needs -A/--app"
    app_module = apps[0].partition(":")[0]
    sources = [module_source(m) for m in (f"{app_module}.celery", app_module)]
    assert any(s is not None and "Celery(" in s.read_text() for s in sources), (
        f"{where}: `-A {apps[0]}` but neither {app_module}/celery.py nor {app_module}/__init__.py creates a Celery app"
    )
    missing = worker_queues(tokens) - declared_queues()
    assert not missing, (
        f'{where}: consumes queue(s) {sorted(missing)} that backend/settings does not declare as Queue("name")'
    )
    for scheduler in option_values(tokens, "-S", "--scheduler"):
        assert_import_target(scheduler, f"{where}: --scheduler")


def check_gunicorn(tokens: list[str], where: str) -> None:
    app_specs = [t for t in tokens[1:] if re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", t)]
    assert len(app_specs) == 1, f"{where}: expected one `module:attr` WSGI app, got {app_specs}"
    assert_import_target(app_specs[0], f"{where}: gunicorn app")


def check_manage_py(tokens: list[str], where: str) -> None:
    assert (REPO / "manage.py").is_file(), f"{where}: runs manage.py, which is missing"
    assert len(tokens) >= 3, f"{where}: `python manage.py` without a command"
    command = tokens[2]
    assert management_command_exists(command), (
        f"{where}: `manage.py {command}` is neither a Django built-in nor a "
        f"*/management/commands/{command}.py in the repo"
    )


def check_command(tokens: list[str], where: str) -> None:
    program = tokens[0]
    if program == "celery":
        check_celery(tokens, where)
    elif program == "gunicorn":
        check_gunicorn(tokens, where)
    elif program in ("python", "python3") and tokens[1:2] == ["manage.py"]:
        check_manage_py(tokens, where)
    else:
        pytest.fail(f"{where}: no check knows the command {shlex.join(tokens)!r}")


# --- reading Dockerfiles ------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, list[str]]]:
    """(INSTRUCTION, arguments) pairs, with `\\` continuations joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), shlex.split(line.split(None, 1)[1]))
        for line in lines
        if line and not line.startswith("#") and len(line.split(None, 1)) == 2
    ]


def dockerfile_inputs(path: Path) -> list[str]:
    """Context paths a Dockerfile needs: COPY/ADD sources (not from other stages)
    and requirements files named in RUN (e.g. `pip install -r requirements.txt`)."""
    needed = []
    for instruction, args in dockerfile_instructions(path):
        if instruction in ("COPY", "ADD"):
            if any(a.startswith("--from=") for a in args):
                continue
            needed += [a for a in args if not a.startswith("--")][:-1]
        elif instruction == "RUN":
            needed += [a for a in args if REQUIREMENTS_FILE.match(a) and not a.startswith("/")]
    return needed


def builds(services: dict[str, Any]) -> list[tuple[str, Path, Path]]:
    """(service, context dir, Dockerfile path) for each service that builds."""
    result = []
    for name, service in services.items():
        build = service.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context = (COMPOSE_FILE.parent / build.get("context", ".")).resolve()
        result.append((name, context, context / build.get("dockerfile", "Dockerfile")))
    return result


def pins(path: Path) -> dict[str, str]:
    """`name==version` lines of a requirements file, names normalised, extras dropped."""
    result = {}
    for line in path.read_text().splitlines():
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            result[re.sub(r"\[.*\]", "", name).strip().lower().replace("_", "-")] = version.strip()
    return result


# --- tests --------------------------------------------------------------------


def test_all_services_are_defined(services: dict[str, Any]) -> None:
    missing = [name for name in SERVICES if name not in services]
    assert not missing, f"docker-compose.yml lacks services: {missing}"


def test_dockerfiles_exist(services: dict[str, Any]) -> None:
    for name, context, dockerfile in builds(services):
        assert context.is_dir(), f"{name}: build context {context} is not a directory"
        assert dockerfile.is_file(), f"{name}: Dockerfile {dockerfile} does not exist"


def test_files_the_dockerfiles_need_exist(services: dict[str, Any]) -> None:
    for name, context, dockerfile in builds(services):
        for needed in dockerfile_inputs(dockerfile):
            matches = list(context.glob(needed)) if needed not in (".", "./") else [context]
            assert matches, (
                f"{name}: {dockerfile.relative_to(REPO)} needs {needed!r}, which is not in the build context {context}"
            )


def test_app_services_have_commands(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        assert command_segments(services[name]), f"{name}: no command"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_commands_refer_to_code_that_exists(services: dict[str, Any], name: str) -> None:
    for tokens in command_segments(services[name]):
        check_command(tokens, f"service {name!r}, command {shlex.join(tokens)!r}")


def test_every_declared_queue_has_a_worker(services: dict[str, Any]) -> None:
    """In the default stack alone: a queue that only a profile's worker consumes waits for that profile."""
    declared = declared_queues()
    assert declared, f'no Queue("name") declarations found in {SETTINGS_DIR}'
    consumed = {
        queue
        for service in default_stack(services).values()
        for tokens in celery_workers(service)
        for queue in worker_queues(tokens)
    }
    assert declared <= consumed, (
        f"queues {sorted(declared - consumed)} are declared in settings but no compose "
        f"service runs a worker for them; their tasks would never run"
    )


@pytest.mark.parametrize("name", GPU_SERVICES)
def test_gpu_services_reserve_a_gpu(services: dict[str, Any], name: str) -> None:
    assert gpu_devices(services[name]), (
        f"{name}: needs deploy.resources.reservations.devices with driver nvidia, capability gpu"
    )


@pytest.mark.parametrize("name", GPU_SERVICES)
def test_gpu_workers_take_one_task_at_a_time(services: dict[str, Any], name: str) -> None:
    celery = celery_workers(services[name])
    assert celery, f"{name}: runs no celery worker"
    for tokens in celery:
        assert option_values(tokens, "--prefetch-multiplier") == ["1"], (
            f"{name}: a GPU worker must run with --prefetch-multiplier=1 so that one "
            f"long GPU task does not hold others back"
        )


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_are_configured(services: dict[str, Any], name: str) -> None:
    env = environment(services[name])
    for variable in (
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "SECRET_KEY",
        "DJANGO_SETTINGS_MODULE",
    ):
        assert env.get(variable), f"{name}: {variable} is not set"
    for variable in ("DATABASE_URL", "CELERY_BROKER_URL"):
        host = urlparse(env[variable]).hostname
        assert host in services, f"{name}: {variable} points at {host!r}, not a compose service"
    assert env["SECRET_KEY"].startswith("${SECRET_KEY:?"), (
        f"{name}: SECRET_KEY must be required from the environment (${{SECRET_KEY:?...}}), not {env['SECRET_KEY']!r}"
    )
    settings = env["DJANGO_SETTINGS_MODULE"]
    assert module_source(settings) is not None, f"{name}: settings module {settings} not found"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_wait_for_healthy_backends(services: dict[str, Any], name: str) -> None:
    depends_on = services[name].get("depends_on") or {}
    for backend in ("postgres", "redis"):
        assert isinstance(depends_on, dict) and backend in depends_on, f"{name}: must depend on {backend}"
        assert depends_on[backend].get("condition") == "service_healthy", (
            f"{name}: must wait for {backend} with condition service_healthy"
        )
        assert services[backend].get("healthcheck"), f"{backend}: has no healthcheck to wait for"


def test_data_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = compose.get("volumes") or {}
    missing = [v for v in DATA_VOLUMES if v not in declared]
    assert not missing, f"top-level volumes lack {missing}"


@pytest.mark.parametrize("name", DATA_SERVICES)
def test_data_volumes_are_shared(services: dict[str, Any], name: str) -> None:
    service = services[name]
    storage_root = environment(service).get("STORAGE_ROOT", "")
    assert storage_root, f"{name}: STORAGE_ROOT is not set"
    mounted = mounts(service)
    for volume in DATA_VOLUMES:
        expected = f"{storage_root.rstrip('/')}/{volume}"
        assert mounted.get(volume) == expected, (
            f"{name}: volume {volume!r} must be mounted at {expected} (STORAGE_ROOT/{volume}); mounts are {mounted}"
        )


def test_gpu_requirements_agree_with_requirements_txt() -> None:
    """The sampler image installs requirements-gpu.txt instead of requirements.txt;
    packages pinned in both must have one version, or the images drift apart."""
    cpu, gpu = pins(REPO / "requirements.txt"), pins(REPO / "requirements-gpu.txt")
    assert "torch" not in gpu, "requirements-gpu.txt must not pin torch: vLLM pins its own"
    differ = {name: (cpu[name], gpu[name]) for name in cpu.keys() & gpu.keys() if cpu[name] != gpu[name]}
    assert not differ, f"requirements.txt vs requirements-gpu.txt pin different versions: {differ}"
