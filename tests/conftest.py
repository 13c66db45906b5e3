import os

from hypothesis import HealthCheck, settings

# numba compiles each kernel on first use (seconds), so no per-example deadline.
settings.register_profile(
    "default", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_terminal_summary(terminalreporter):
    from helpers import MAX_ERRORS

    if not MAX_ERRORS:
        return
    terminalreporter.section("largest scaled error per strategy and dtype (vs torch float64)")
    for (strategy, dtype), err in sorted(MAX_ERRORS.items()):
        terminalreporter.write_line(f"{strategy:12s} {dtype:8s} {err:.3e}")
