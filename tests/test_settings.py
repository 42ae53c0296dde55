from __future__ import annotations

import argparse

import pytest

from server.settings import Settings, add_settings_arguments, settings_from


def parse(argv: list[str], env: dict[str, str]) -> Settings:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    return settings_from(parser.parse_args(argv), env)


def test_flag_beats_environment_beats_default() -> None:
    assert parse([], {}).max_n == Settings().max_n
    assert parse([], {"PONDER_MAX_N": "9"}).max_n == 9
    assert parse(["--max-n", "3"], {"PONDER_MAX_N": "9"}).max_n == 3


def test_types_and_special_names() -> None:
    settings = parse(
        ["--enforce-eager", "--block-size", "32"],
        {"PONDER_CACHE": "/tmp/c", "PONDER_MAX_TIME_LIMIT_S": "2.5"},
    )
    assert settings.enforce_eager is True and settings.block_size == 32
    assert str(settings.cache_dir) == "/tmp/c" and settings.max_time_limit_s == 2.5
    assert settings.limits.max_time_limit_s == 2.5


def test_model_name_defaults() -> None:
    assert Settings().model_name == "smollm2-135m-instruct"
    assert Settings(policy="/models/Qwen2.5-Math-1.5B").model_name == "Qwen2.5-Math-1.5B"
    assert Settings(policy="x", served_model_name="y").model_name == "y"


def test_bad_number_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse(["--port", "eighty"], {})
