"""Diverse verifier tree search (DVTS; Beeching et al., search-and-learn).

Beam search lets one strong early step take over every beam. DVTS instead splits
the N samples into N/M independent subtrees: the root's N first steps form N/M
groups of M, and every round each subtree keeps only its own best new step (best
of its M, by score) and expands it M ways. A subtree ends when that best step ends
its solution; the search ends when every subtree has ended (or the budget has), as
in search-and-learn, never merely because N paths have finished: finished siblings
of a subtree's best step do not end the subtree. Subtrees never compete, so the
final weighted vote sees N/M different lines of reasoning. All subtrees still share
one engine call and one reward call per round.
"""

from __future__ import annotations

from search_strategies.beam_search import BeamSearchParams, grow_rounds
from search_strategies.context import SearchContext
from search_strategies.results import SearchResult
from search_strategies.step_tree import StepNode, StepTree


class DVTSParams(BeamSearchParams):
    """`n` samples per round in `n / beam_width` subtrees of `beam_width` each
    (`beam_width` must divide `n`, as search-and-learn asserts)."""


def subtree_of(tree: StepTree, node: StepNode, width: int) -> int:
    """Which subtree a node belongs to: its first step's sample index // M."""
    first_step = node.path()[0]
    return tree.root.children.index(first_step) // width


def best_per_subtree(
    params: BeamSearchParams, tree: StepTree, wave: list[StepNode], finished: int
) -> list[StepNode]:
    """DVTS's rule: each subtree keeps its single best new node, if still open.

    A subtree whose best new step finished the solution is done; how many paths
    have finished elsewhere (`finished`) does not matter, so the search runs until
    no subtree is left open.
    """
    best: dict[int, StepNode] = {}
    for node in wave:
        group = subtree_of(tree, node, params.beam_width)
        incumbent = best.get(group)
        if incumbent is None or (node.score or 0.0, node.mean_logprob) > (
            incumbent.score or 0.0,
            incumbent.mean_logprob,
        ):
            best[group] = node
    ranked = sorted(best.values(), key=lambda n: n.score or 0.0, reverse=True)
    return [node for node in ranked if not node.terminal]


async def dvts(ctx: SearchContext, params: DVTSParams) -> SearchResult:
    return await grow_rounds(ctx, params, best_per_subtree)
