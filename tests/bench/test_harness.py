"""bench/harness.py: rounds interleaved with the order rotated, ratios taken within a round, medians and
spreads computed as stated. The variants here return fixed numbers (nothing is timed), so every
expectation is worked out by hand below."""

import importlib.util
import sys

import pytest

from tests.conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location("harness", REPO_ROOT / "bench/harness.py")
harness = importlib.util.module_from_spec(spec)
sys.modules.setdefault("harness", harness)  # its dataclass looks its module up there
spec.loader.exec_module(harness)


def scripted(name, values, calls):
    """A variant that returns the next of `values` each round and records when it ran."""
    remaining = iter(values)

    def run():
        calls.append(name)
        return {"items_per_s": next(remaining), "label": name}

    return run


def test_order_rotates_each_round():
    assert harness.round_orders(["a", "b", "c"], 4) == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]


def test_ratios_are_per_round_and_summarised_by_median_and_spread():
    # Round loads differ (the baseline is 10, 20, 40, 5 items/s); ours is twice, 3x, 2x and 2x it in the
    # same round. The ratio of medians would be 25/15 = 1.67x; the median per-round ratio is 2.0x.
    calls = []
    variants = {"stock": scripted("stock", [999, 10, 20, 40, 5], calls),
                "ours": scripted("ours", [999, 20, 60, 80, 10], calls)}
    result = harness.compare(variants, baseline="stock", rounds=4, warmup_rounds=1,
                             metrics={"items_per_s": "higher"}, log=lambda line: None)
    # The warm-up round ran first (stock, ours) and is not counted; then ours first, stock first, ...
    assert calls == ["stock", "ours", "ours", "stock", "stock", "ours", "ours", "stock", "stock", "ours"]
    summary = result.as_dict()
    assert summary["rounds"] == 4
    assert summary["variants"]["stock"]["items_per_s"] == {"median": 15.0, "min": 5, "max": 40, "q1": 8.75, "q3": 25.0, "n": 4}
    ratio = summary["ratios"]["ours"]["items_per_s"]
    assert ratio["per_round"] == [2.0, 3.0, 2.0, 2.0]
    assert (ratio["median"], ratio["min"], ratio["max"], ratio["q1"], ratio["q3"]) == (2.0, 2.0, 3.0, 2.0, 2.25)
    assert "stock" not in summary["ratios"]
    assert [r["order"] for r in summary["per_round"]] == [["ours", "stock"], ["stock", "ours"]] * 2
    assert summary["per_round"][0]["results"]["ours"]["label"] == "ours"  # extra keys are kept
    assert len(summary["load_average_before"]) == 3 and len(summary["load_average_after"]) == 3
    table = result.table()
    assert "2.00x [2.00-3.00] (2.00-2.25)" in table and "higher is better" in table


def test_bad_calls_are_refused():
    one = {"a": lambda: {"x": 1.0}}
    with pytest.raises(ValueError, match="baseline 'b' is not one of the variants"):
        harness.compare(one, baseline="b", metrics={"x": "higher"})
    with pytest.raises(ValueError, match="'higher' or 'lower'"):
        harness.compare(one, baseline="a", metrics={"x": "faster"})
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        harness.compare(one, baseline="a", metrics={"x": "higher"}, rounds=0)
    with pytest.raises(ValueError, match=r"variant 'a' returned no number for \['y'\]"):
        harness.compare(one, baseline="a", metrics={"y": "lower"}, log=lambda line: None)


def test_run_worker_reads_what_emit_printed(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(f"import sys; sys.path.insert(0, {str(REPO_ROOT / 'bench')!r})\n"
                      "import harness\nprint('noise')\nharness.emit({'items_per_s': 3.5})\nprint('after')\n")
    assert harness.run_worker([sys.executable, str(worker)]) == {"items_per_s": 3.5}
    worker.write_text("import sys\nprint('half done')\nsys.exit(2)\n")
    with pytest.raises(SystemExit, match="failed \\(exit 2\\):\nhalf done"):
        harness.run_worker([sys.executable, str(worker)])
