"""Reading, validating and mixing training data, with every drop and truncation counted."""
