"""The RL stage: GPPO (and every TRL GRPO loss) on TRL's GRPOTrainer, `accelerate launch -m align.rl`."""
