"""Unit logic of the serving layer: the search queue, API keys, chat ↔ problem mapping.

Each behaviour is also exercised over HTTP in test_production.py / test_openai_chat.py.
"""

from __future__ import annotations

import argparse
import asyncio

import pytest

from search_strategies.budget import StopReason, Usage
from search_strategies.results import Candidate, SearchResult
from server.auth import KeyChecker, load_api_keys
from server.errors import InvalidRequest, ServerBusy
from server.limits import SearchSlots
from server.openai_api import problem_from
from server.openai_format import choice_answer, content_pieces
from server.openai_schemas import ChatCompletionRequest
from server.service import SearchRun
from server.settings import add_settings_arguments, settings_from


def test_slots_run_queue_and_refuse_in_order() -> None:
    async def scenario() -> list[str]:
        slots = SearchSlots(max_active=1, max_queued=1)
        events: list[str] = []
        release = asyncio.Event()

        async def search(name: str) -> None:
            async with slots.hold():
                events.append(f"start {name}")
                await release.wait()

        first = asyncio.create_task(search("a"))
        await asyncio.sleep(0)
        second = asyncio.create_task(search("b"))
        await asyncio.sleep(0)
        assert (slots.active, slots.queued) == (1, 1)
        with pytest.raises(ServerBusy) as busy:
            await search("c")
        assert busy.value.retry_after_s >= 1
        release.set()
        await asyncio.gather(first, second)
        assert (slots.active, slots.queued) == (0, 0)
        return events

    assert asyncio.run(scenario()) == ["start a", "start b"]


def test_a_cancelled_waiter_leaves_the_queue_and_loses_no_slot() -> None:
    async def scenario() -> None:
        slots = SearchSlots(max_active=1, max_queued=2)
        release = asyncio.Event()

        async def search() -> None:
            async with slots.hold():
                await release.wait()

        holder = asyncio.create_task(search())
        await asyncio.sleep(0)
        waiter = asyncio.create_task(search())
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert slots.queued == 0
        release.set()
        await holder
        assert slots.active == 0
        async with slots.hold():  # the slot is free again
            assert slots.active == 1

    asyncio.run(scenario())


def test_key_checker_accepts_only_exact_keys_and_reads_key_files(tmp_path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# comment\n\nfile-key\n  spaced-key  \n")
    keys = load_api_keys(["flag-key"], key_file)
    assert keys == ("flag-key", "file-key", "spaced-key")
    checker = KeyChecker(keys)
    assert all(checker.accepts(key) for key in keys)
    assert not any(checker.accepts(k) for k in ("", "flag-ke", "flag-keyy", "FILE-KEY"))


def test_api_keys_from_repeated_flags_or_a_comma_separated_variable() -> None:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    flags = settings_from(parser.parse_args(["--api-key", "a", "--api-key", "b"]), {})
    assert flags.api_key == ("a", "b")
    env = settings_from(
        parser.parse_args([]), {"PONDER_API_KEY": "c, d", "PONDER_METRICS_REQUIRE_KEY": "true"}
    )
    assert env.api_key == ("c", "d") and env.metrics_require_key is True
    assert settings_from(parser.parse_args([]), {}).api_key == ()


def chat(messages: list[dict], **extra) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": messages, **extra})


def test_turns_stay_turns() -> None:
    problem = problem_from(
        chat(
            [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "What is 2+2?"},
            ]
        ),
        "default",
    )
    assert problem.system_prompt == "Be brief." and problem.question == "What is 2+2?"
    assert [(m.role, m.content) for m in problem.history] == [
        ("user", "Hi"),
        ("assistant", "Hello."),
    ]
    assert problem_from(chat([{"role": "user", "content": "q"}]), "default").system_prompt == (
        "default"
    )
    with pytest.raises(InvalidRequest, match="last message"):
        problem_from(
            chat([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]), "d"
        )


def run_with(text: str | None, finish: str = "stop") -> SearchRun:
    chosen = Candidate(text, None, -0.1, finish, 5) if text is not None else None
    result = SearchResult(
        chosen=chosen,
        candidates=[chosen] if chosen else [],
        usage=Usage(),
        stopped_reason=StopReason.COMPLETED,
    )
    return SearchRun("best_of_n", None, {}, result, 0.1)


def test_stop_strings_cut_the_returned_answer() -> None:
    assert choice_answer(run_with("a STOP b END c"), ["END", "STOP"]) == ("a ", "stop")
    assert choice_answer(run_with("abc", "length"), ["x"]) == ("abc", "length")
    assert choice_answer(run_with(None), []) == ("", "length")


@pytest.mark.parametrize("text", ["", "one", "Step 1: 3 * 4 = 12.\n\n" * 9, "  lead  trail  "])
def test_content_pieces_join_back_exactly(text: str) -> None:
    pieces = content_pieces(text, size=16)
    assert "".join(pieces) == text
    assert all(piece for piece in pieces)
