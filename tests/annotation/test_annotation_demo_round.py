"""The annotation leg of `make demo` (`annotation.demo.scripted_annotation_round`). The round itself, on a
server of its own, is asserted on the demo's own run (`tests/test_demo.py::test_the_demos_annotation_round_
writes_dpo_input`): one Argilla start serves both. Here: its default rule, pure."""

from annotation.simulate import ShownPair, prefer_longer_answer


def test_the_default_scripted_rule_prefers_the_longer_answer_in_either_position():
    def shown(a: str, b: str) -> ShownPair:
        return ShownPair("r1", [{"role": "user", "content": "Demo question?"}], a, b)

    long, short = "A long and detailed answer, with reasons.", "Short."
    assert prefer_longer_answer(shown(long, short)) == "a"
    assert prefer_longer_answer(shown(short, long)) == "b"
    assert prefer_longer_answer(shown("Same.", "Also.")) == "tie"
