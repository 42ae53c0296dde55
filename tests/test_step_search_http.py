"""Beam search, DVTS, MCTS and revision over HTTP against the real engine.

Budgets are tiny so the CPU suite stays fast; what is checked is that each search
runs in waves on vLLM (several batched engine calls, prefix cache hits), charges
every token within budget, returns a tree, and validates its parameters.
"""

from __future__ import annotations

import httpx
import pytest

QUESTION = "What is 12 * 7?"
COMMON = {"max_new_tokens": 96, "seed": 3, "reward": "arithmetic"}
STEP = {**COMMON, "max_step_tokens": 24}
BUDGET_TOKENS = 400

CASES = {
    "beam_search": {"n": 4, "beam_width": 2, "max_steps": 3},
    "dvts": {"n": 4, "beam_width": 2, "max_steps": 3},
    "mcts": {"simulations": 6, "expansion_width": 2, "wave_size": 3, "max_depth": 3},
    "revision": {"parallel_chains": 2, "max_revisions": 1, "max_new_tokens": 64},
}
FIELDS = {
    name: {**(COMMON if name == "revision" else STEP), **fields}
    for name, fields in CASES.items()
}


@pytest.mark.parametrize("strategy", sorted(CASES))
def test_step_search_runs_in_budgeted_waves(client: httpx.Client, strategy: str) -> None:
    body = {
        "question": QUESTION,
        "strategy": strategy,
        **FIELDS[strategy],
        "budget": {"max_tokens": BUDGET_TOKENS},
        "return_trace": True,
    }
    response = client.post("/v1/solve", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    usage = result["usage"]
    assert 0 < usage["generated_tokens"] <= BUDGET_TOKENS
    assert usage["engine_calls"] >= 2 and usage["reward_calls"] >= 1
    assert usage["nodes"] == len(result["trace"]) - 1
    assert result["stopped_reason"] in ("completed", "token_budget")
    assert result["reward"] == "arithmetic"

    trace = {node["id"]: node for node in result["trace"]}
    assert trace[0]["parent"] is None
    assert all(node["parent"] in trace for node in result["trace"][1:])
    chosen = [node for node in result["trace"] if node["chosen"]]
    assert chosen and result["answer_text"]
    # The chosen nodes form one path from the root, and its text is the answer text.
    assert result["answer_text"].startswith("".join(n["text"] for n in chosen[1:])[:10])
    if strategy == "mcts":
        assert trace[0]["visits"] >= 1 and all(n["visits"] is not None for n in chosen)
    if strategy in ("beam_search", "dvts"):
        # Children are prompted with their parent's token ids: the prefix cache hits.
        assert usage["cached_prompt_tokens"] > 0


def test_step_search_stops_at_the_reward_budget(client: httpx.Client) -> None:
    response = client.post(
        "/v1/solve",
        json={
            "question": QUESTION, "strategy": "beam_search", **STEP,
            "n": 4, "beam_width": 2, "budget": {"max_reward_calls": 1},
        },
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["stopped_reason"] in ("reward_budget", "completed")
    assert result["usage"]["reward_calls"] == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"strategy": "beam_search", "n": 2, "beam_width": 4}, "beam_width"),
        ({"strategy": "mcts", "simulations": 0}, "simulations"),
        ({"strategy": "mcts", "simulations": 100000}, "simulations"),
        ({"strategy": "revision", "context_attempts": 9}, "context_attempts"),
        ({"strategy": "dvts", "max_step_tokens": 100000}, "max_step_tokens"),
        ({"strategy": "beam_search", "budget": {"max_tokens": 0}}, "budget.max_tokens"),
        ({"strategy": "beam_search", "budget": {"max_reward_calls": 0}},
         "budget.max_reward_calls"),
        ({"strategy": "mcts", "reward": "nope"}, "reward"),
    ],
)
def test_bad_search_parameters_are_400_naming_the_field(
    client: httpx.Client, body: dict, param: str
) -> None:
    response = client.post("/v1/solve", json={"question": QUESTION, **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert param.split(".")[-1] in error["message"]
