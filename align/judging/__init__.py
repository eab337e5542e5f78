"""The LLM judge: MT-Bench and AlignBench answers, judgments, scores and reports.

Entry point: `python -m align.judging <command>` (see __main__.py and docs/judging.md).
Interfaces other stages use:
- `align.judging.answers.generate_answers` (with `TransformersBackend` / `EndpointBackend`)
- `align.judging.pairwise.judge_pair` / `judge_pairs` -> `PairVerdict`
- `align.judging.hook.judge_after_training(model_dir, out_dir, judge_config)`
All judge-API calls go through `align.judging.client`.
"""
