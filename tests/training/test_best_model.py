"""`load_best_model_at_end` without DeepSpeed brings back every weight of the best checkpoint, routed experts and
expert bias included: transformers' `_load_best_model` reads `model.safetensors` with a plain non-strict
`load_state_dict`, which skips the official Klear names (per-expert weights, `mlp.expert_bias`) that only
`from_pretrained` converts. One process, tiny SFT, one run of 4 steps."""

from safetensors.torch import load_file

from align.data.demo import write_demo_data
from tests.training.sft_run import sft


def test_the_final_model_is_the_best_checkpoint_experts_included(tmp_path, tiny_klear_dir):
    data = write_demo_data(tmp_path / "data", n_train=16, n_eval=4)
    out = tmp_path / "run"
    # "Best" is the highest eval loss here, so that it falls on checkpoint-2 (training lowers the loss): the
    # model in memory at the end is step 4's, and only a real load can make the saved model step 2's.
    trainer = sft(out, data["sft"], 4, "--eval_dataset_name", str(data["sft_eval"]),
                  "--model_name_or_path", str(tiny_klear_dir), "--logging_steps", "2",
                  "--eval_strategy", "steps", "--eval_steps", "2",
                  "--load_best_model_at_end", "true", "--metric_for_best_model", "eval_loss", "--greater_is_better", "true")
    assert trainer.state.best_model_checkpoint == str(out / "checkpoint-2"), trainer.state.log_history

    best, last, final = (load_file(str(path / "model.safetensors"))
                         for path in (out / "checkpoint-2", out / "checkpoint-4", out))
    experts = [name for name in best if ".mlp.experts." in name]
    assert experts and any(name.endswith("mlp.expert_bias") for name in best)
    assert any(not best[name].equal(last[name]) for name in experts)  # steps 3-4 moved the experts
    assert final.keys() == best.keys()
    assert [name for name in best if not final[name].equal(best[name])] == []
