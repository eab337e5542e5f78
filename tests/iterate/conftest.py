import pytest

from tests.judging.judging_support import start_scripted_judge, stop


@pytest.fixture(scope="session")
def paris_judge(tmp_path_factory):
    """The loopback scripted judge (tests/judging/scripted_judge.py): pairwise, the answer naming Paris wins;
    single grades replayed from FastChat's judgments."""
    judge = start_scripted_judge(tmp_path_factory.mktemp("paris-judge"), 0.0, "--prefer", "Paris")
    yield judge
    stop(judge.process)
