"""What the SFT and DPO stages share: MoE options, data options, expert parallelism, saving, summaries."""
