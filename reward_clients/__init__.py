"""Reward models and verifiers behind one `score()` interface (see DESIGN.md).

`arithmetic` (weight-free verifier), `self_judge` (the policy grades its steps),
`learned_prm` (Qwen2.5-Math-PRM, Math-Shepherd, RLHFlow over a `PRMBackend`; the
backends live in `server/prm/`), `prm_formats` (their exact inputs), `combinators`
(weighted ensemble, fallback) and `registry` (the `--reward` names).
"""
