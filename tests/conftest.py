"""Shared fixtures: one simulator build cache per test session."""
import os
from pathlib import Path

import pytest

from sim.tools import have_icarus, ICARUS_HINT


@pytest.fixture(scope="session")
def sim_cache():
    path = Path(os.environ.get("PIMGEN_SIM_CACHE", Path(__file__).resolve().parents[1] / "build" / "sim_cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


requires_icarus = pytest.mark.skipif(not have_icarus(), reason=ICARUS_HINT)
