"""RL rows and recipe values: a bad row or value is one located line; what a row may hold goes through."""

import json

import pytest
from trl import ModelConfig, ScriptArguments, TrlParser

from align.data.sources import DataError, DataReport, Source
from align.rl.config import KlearGRPOConfig
from align.rl.data import read_prompt_rows
from tests.distributed import REPO_ROOT


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prompt_rows_keep_the_reward_columns(tmp_path):
    data = write_rows(tmp_path / "p.jsonl", [
        {"prompt": [{"role": "user", "content": "1+1?"}], "answer": 2},
        {"prompt": [{"role": "user", "content": "2+2?"}], "answer": "4"},
    ])
    rows = read_prompt_rows([Source(str(data))], DataReport())
    assert rows["answer"] == ["2", "4"] and rows["location"] == [f"{data}:1", f"{data}:2"]


@pytest.mark.parametrize("row,message", [
    ({"answer": "1"}, ":2: field 'prompt' is missing"),
    ({"prompt": "  "}, ":2: field 'prompt' is empty"),
    ({"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
     ":2: field 'prompt[1].role' must be 'user'"),
    ({"prompt": "q", "chosen": "a"}, ":2: field 'chosen' is not read by the RL stage"),
    ({"prompt": "q", "answer": ["x"]}, ":2: field 'answer' must be text or a number"),
    ({"prompt": "q", "input_output": "{}"}, ":2: field 'input_output': unknown test format"),
    ({"prompt": "q", "ability": "code", "reward_model": {"ground_truth": '{"inputs": ["1"], "outputs": []}'}},
     ":2: field 'reward_model.ground_truth': `inputs` and `outputs` must be lists of the same length"),
    ({"prompt": "q", "ability": "math", "reward_model": {"ground_truth": " "}},
     ":2: field 'reward_model.ground_truth' must be a non-empty answer"),
    ({"prompt": "q", "reward_model": "4"}, ":2: field 'reward_model' must be an object with a 'ground_truth'"),
    ({"question": " ", "input_output": '{"inputs": ["1"], "outputs": ["1"]}'}, ":2: field 'question' must be non-empty"),
])
def test_a_bad_row_is_named(tmp_path, row, message):
    data = write_rows(tmp_path / "p.jsonl", [{"prompt": "fine"}, row])
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_prompt_rows([Source(str(data))], DataReport())


# The Klear team's released sets as their cards and README show a row (Kwai-Klear/KlearReasoner-MathSub-30K,
# train_math_30K.json; Kwai-Klear/KlearReasoner-CodeSub-15K, whose card elides ground_truth: here it holds the
# two forms the team's verifier, verl/utils/reward_score/code_r1_compute.py, reads), and TACO/APPS as they come.
MATHSUB_ROW = {"data_source": "math_longcot_math_verify", "prompt": [{"content": "Let $n=9867$. If you calculated "
               "$n^{3}-n^{2}$, what would be the unit digit found?\n(a) 0\n(b) 2\n(c) 4\n(d) 6\n(e) 8", "role": "user"}],
               "ability": "math", "reward_model": {"ground_truth": "4", "style": "rule"}, "__index_level_0__": "29999"}


def codesub_row(content, ground_truth):
    return {"hash": "47c43857280be8a7557cc36b998b3012", "ability": "code", "data_source": "coder1_longcot",
            "prompt": [{"content": "You are an expert Python programmer. " + content, "role": "user"}],
            "reward_model": {"ground_truth": json.dumps(ground_truth), "style": "rule"}}


def taco_row(question, starter_code, input_output):
    return {"question": question, "solutions": json.dumps([]), "starter_code": starter_code,
            "input_output": json.dumps(input_output), "difficulty": "EASY", "source": "codewars"}


DISHES = "n = int(input())\ns = [input() for _ in range(n)]\nprint('No' if any(s[i] == s[i + 1] == 'sweet' for i in range(n - 2)) else 'Yes')"
# LeetCode style: deque, Optional and TreeNode/ListNode never imported, as the team's verifier provides them.
MAX_DEPTH = ("class Solution:\n    def maxDepth(self, root: Optional[TreeNode]) -> int:\n        depth, level = 0, deque([root] if root else [])\n"
             "        while level:\n            depth += 1\n            for _ in range(len(level)):\n"
             "                node = level.popleft()\n                level.extend(c for c in (node.left, node.right) if c)\n"
             "        return depth")
REVERSE = ("class Solution:\n    def reverseList(self, head: Optional[ListNode]) -> Optional[ListNode]:\n        before = None\n"
           "        while head:\n            head.next, before, head = before, head, head.next\n        return before")


def fenced(code):
    return f"<think>plan</think>\n```python\n{code}\n```"


def test_the_klear_sets_and_taco_rows_are_read_and_scored_as_they_come(tmp_path):
    from align.rl.rewards import code_reward, math_reward

    math_rows = read_prompt_rows([Source(str(write_rows(tmp_path / "train_math_30K.json", [MATHSUB_ROW])))], DataReport())
    assert math_rows["prompt"][0] == MATHSUB_ROW["prompt"]
    completions = ["<think>9867 ends in 7: 343 - 49</think>The unit digit is \\boxed{4}.", "</think>\\boxed{2}"]
    assert math_reward(completions=completions, reward_model=list(math_rows["reward_model"]) * 2) == [1.0, 0.0]

    code_rows = read_prompt_rows([Source(str(write_rows(tmp_path / "codesub.jsonl", [
        codesub_row("Takahashi is planning to eat N dishes...", {
            "inputs": ["5\nsalty\nsweet\nsalty\nsalty\nsweet\n", "4\nsweet\nsalty\nsweet\nsweet\n",
                       "6\nsalty\nsweet\nsweet\nsalty\nsweet\nsweet\n"], "outputs": ["Yes\n", "Yes\n", "No\n"]}),
        codesub_row("Return the maximum depth of a binary tree.", {"functional": (
            "def check(candidate):\n    assert candidate(tree_node([3, 9, 20, None, None, 15, 7])) == 3\n"
            "    assert candidate(tree_node([1, None, 2])) == 2\n    assert candidate(None) == 0\n\ncheck(Solution().maxDepth)")}),
        codesub_row("Reverse a linked list.", {"functional": [
            "assert is_same_list(Solution().reverseList(list_node([1, 2, 3])), list_node([3, 2, 1]))",
            "assert Solution().reverseList(None) is None", "assert Solution().reverseList(list_node([1])).val == 2"]}),
    ])))], DataReport())
    rewards = code_reward(completions=[fenced(DISHES), fenced(MAX_DEPTH), fenced(REVERSE)],
                          reward_model=list(code_rows["reward_model"]))
    assert rewards == [1.0, 1.0, 2 / 3]  # the last row's third test expects the wrong value

    taco_rows = read_prompt_rows([Source(str(write_rows(tmp_path / "taco.jsonl", [
        taco_row("Print the sum of two integers.", "", {"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]}),
        taco_row("Write add(a, b).", "def add(a, b):", {"fn_name": "add", "inputs": [[1, 2], [2, 3]], "outputs": [[3], [5]]}),
    ])))], DataReport())
    assert list(taco_rows["prompt"]) == ["Print the sum of two integers.",
                                   "Write add(a, b).\n\nStart from this code:\n```python\ndef add(a, b):\n```"]
    rewards = code_reward(completions=[fenced("a, b = map(int, input().split())\nprint(a + b)"),
                                       fenced("def add(a, b):\n    return a + b")], input_output=list(taco_rows["input_output"]))
    assert rewards == [1.0, 1.0]


def parse(tmp_path, *extra):
    argv = ["--model_name_or_path", "x", "--output_dir", str(tmp_path), "--use_cpu", "true", "--bf16", "false",
            "--reward_funcs", "math", *extra]
    return TrlParser((ScriptArguments, KlearGRPOConfig, ModelConfig)).parse_args_and_config(argv)[1]


def test_rl_defaults_turn_the_aux_loss_off_and_freeze_the_bias(tmp_path):
    args = parse(tmp_path)
    assert args.router_aux_loss_coef == 0.0 and args.expert_bias_update == "frozen"


@pytest.mark.parametrize("extra,message", [
    (["--loss_type", "ppo"], "loss_type must be one of grpo, .*gppo"),
    (["--loss_type", "dapo", "--dual_clip", "10"], "dual_clip is set but loss_type is 'dapo'"),
    (["--loss_type", "gppo", "--importance_sampling_level", "sequence"], "gppo supports importance_sampling_level"),
    (["--loss_type", "gppo", "--dual_clip", "0.5"], "dual_clip must be greater than 1"),
    (["--reward_weights", "1.0", "2.0"], "reward_weights has 2 values for 1 reward_funcs"),
    (["--vllm_enforce_eager", "true"], "vllm_enforce_eager applies to use_vllm with vllm_mode colocate only"),
])
def test_bad_values_are_refused(tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        parse(tmp_path, *extra)


def test_a_code_recipe_on_a_machine_without_a_working_sandbox_stops_at_start(tmp_path, monkeypatch, capsys):
    """The stage's CLI with `reward_funcs: [code]` where bubblewrap cannot be found: one line, exit 1,
    before any data or model is read and with nothing written."""
    from align.rl import sandbox
    from align.rl.__main__ import main as rl_main
    from align.training.cli import run_stage

    monkeypatch.setattr(sandbox, "_default", None)  # the process's pool is made afresh, under this PATH
    monkeypatch.setenv("PATH", str(tmp_path / "no-bwrap-here"))
    monkeypatch.delenv("KLEAR_DEBUG", raising=False)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        run_stage("align.rl", rl_main, KlearGRPOConfig,
                  ["--config", str(REPO_ROOT / "configs/rl/tiny.yaml"), "--reward_funcs", "code", "--output_dir", str(out),
                   "--dataset_name", str(tmp_path / "missing.jsonl"), "--model_name_or_path", str(tmp_path / "none")])
    assert exit_.value.code == 1
    line, = capsys.readouterr().err.splitlines()
    assert "the code sandbox does not work here: sandbox_error: bubblewrap (bwrap) is not installed" in line
    assert "missing.jsonl" not in line and not out.exists()
