"""The LLM judge: MT-Bench and AlignBench answers, judgments, scores and reports.

Entry point: `python -m align.judging <command>` (see __main__.py and docs/judging.md).
Interfaces other stages use:
- `align.judging.answers.generate_answers` (with `TransformersBackend` / `EndpointBackend`)
- `align.judging.pairwise.judge_pair` / `judge_pairs` -> `PairVerdict`
- `align.judging.saved_model.judge_saved_model(model_dir, out_dir, judge_section)` (the section:
  `align.judging.config.JudgeSection`, parsed with a stage's recipe)
All judge-API calls go through `align.judging.client`.

Modules, in the order data flows: align.data.benchmarks (questions, answer files) -> answers (generation)
-> prompts -> tasks -> judgments (calls, rows, the run) with client and parsing -> runs (the
output directory) -> aggregate -> summary -> report (+ charts); saved_model ties them for the
training stages and `evaluate`; config is the judge's options (JudgeSection: a recipe's `judge:`); fastchat_import, pairwise, local_server.
"""
