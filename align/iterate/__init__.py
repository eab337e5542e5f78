"""On-policy DPO rounds (`python -m align.iterate`): the policy's own answers, scored, paired and trained,
round after round. See `align/iterate/__main__.py` and docs/iterate.md."""
