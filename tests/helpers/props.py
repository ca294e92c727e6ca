"""Hypothesis settings for the property tests of parsers of outside bytes (tests/fuzz/).

CI runs them with a fixed budget: derandomized (the same examples every run, so a failure reproduces), a bounded
number of examples per test, no example database written into the tree, no per-example deadline (the machine is
shared). HYBRIDOS_FUZZ_EXAMPLES=N raises the budget for a longer local run.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings


def budget(examples: int) -> settings:
    scale = int(os.environ.get("HYBRIDOS_FUZZ_EXAMPLES", "0"))
    return settings(max_examples=max(examples, scale), derandomize=scale == 0, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much], print_blob=True)
