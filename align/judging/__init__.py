"""The LLM judge: MT-Bench and AlignBench answers, judgments, scores and reports.

Entry point: `python -m align.judging <command>` (see __main__.py and docs/judging.md).
Interfaces other stages use:
- `align.judging.answers.generate_answers` (with `TransformersBackend` / `EndpointBackend`)
- `align.judging.pairwise.judge_pair` / `judge_pairs` -> `PairVerdict`
- `align.judging.after_training.judge_after_training(model_dir, out_dir, judge_config)`
All judge-API calls go through `align.judging.client`.

Modules, in the order data flows: align.data.benchmarks (questions, answer files) -> answers (generation)
-> prompts -> tasks -> judgments (calls, rows, the run) with client and parsing -> runs (the
output directory) -> aggregate -> summary -> report (+ charts); after_training ties them for the
training stages; config is the judge's options; fastchat_import, pairwise, local_server.
"""
