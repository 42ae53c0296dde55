"""Reward models and verifiers behind one `score()` interface (see DESIGN.md).

Empty until the reward-models issue lands; best-of-N selects by majority vote until then.
"""
