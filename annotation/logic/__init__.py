"""The workflow's pure logic: push input and A/B pairs (`pairs`), the dataset's names (`schema`),
votes to preferences (`resolve`), annotator quality (`quality`) and agreement statistics
(`agreement`). Nothing here talks to a server; the commands in `annotation/` do."""
