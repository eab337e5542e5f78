"""`python -m align.serve CHECKPOINT`: see align/serving/server.py."""
