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
    "particle_filtering": {"n": 4, "max_steps": 3, "ess_threshold": 1.0},
}
FIELDS = {
    name: {**(COMMON if name == "revision" else STEP), **fields} for name, fields in CASES.items()
}


def _chosen_chain(trace: list[dict]) -> list[dict]:
    """The chosen nodes as one path: root first, each the only chosen child of the
    one before; fails if any chosen node is off that path."""
    chosen = {node["id"]: node for node in trace if node["chosen"]}
    chain = [chosen.pop(0)]
    while True:
        children = [n for n in chosen.values() if n["parent"] == chain[-1]["id"]]
        assert len(children) <= 1, f"two chosen children of node {chain[-1]['id']}"
        if not children:
            break
        chain.append(chosen.pop(children[0]["id"]))
    assert not chosen, f"chosen nodes off the chosen path: {sorted(chosen)}"
    return chain


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
    chain = _chosen_chain(result["trace"])
    assert len(chain) >= 2 and result["answer_text"]
    if strategy == "revision":  # each node is a whole attempt revising its parent
        assert result["answer_text"] == chain[-1]["text"]
    else:  # each node is a step: the path's steps are the answer's text
        assert result["answer_text"] == "".join(node["text"] for node in chain[1:])
    if strategy == "mcts":
        assert trace[0]["visits"] >= 1 and all(n["visits"] is not None for n in chain)
    if strategy in ("beam_search", "dvts"):
        # Children are prompted with their parent's token ids: the prefix cache hits.
        assert usage["cached_prompt_tokens"] > 0
    if strategy == "particle_filtering":
        # The lineage and weights: N particles from the root, every step weighed, the
        # answer a finished particle that kept weight.
        steps = result["trace"][1:]
        assert trace[0]["weight"] is None
        assert all(0.0 <= node["weight"] <= 1.0 + 1e-9 for node in steps)
        assert sum(node["parent"] == 0 for node in steps) == CASES[strategy]["n"]
        assert chain[-1]["weight"] > 0.0
    else:
        assert all(node["weight"] is None for node in result["trace"])


def test_step_search_stops_at_the_reward_budget(client: httpx.Client) -> None:
    """8-token steps cannot finish a solution in the first round, so the search needs
    a second reward call, which the budget refuses."""
    response = client.post(
        "/v1/solve",
        json={
            "question": QUESTION,
            "strategy": "beam_search",
            **STEP,
            "max_step_tokens": 8,
            "n": 4,
            "beam_width": 2,
            "budget": {"max_reward_calls": 1},
        },
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["stopped_reason"] == "reward_budget"
    assert result["usage"]["reward_calls"] == 1
    assert result["answer_text"]  # anytime: the best path so far, completed greedily


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"strategy": "beam_search", "n": 2, "beam_width": 4}, "beam_width"),
        ({"strategy": "mcts", "simulations": 0}, "simulations"),
        ({"strategy": "mcts", "simulations": 100000}, "simulations"),
        ({"strategy": "revision", "context_attempts": 9}, "context_attempts"),
        ({"strategy": "dvts", "max_step_tokens": 100000}, "max_step_tokens"),
        ({"strategy": "beam_search", "budget": {"max_tokens": 0}}, "budget.max_tokens"),
        ({"strategy": "beam_search", "budget": {"max_reward_calls": 0}}, "budget.max_reward_calls"),
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
