"""klear-align: preference alignment for the Klear MoE. Importing it registers the Klear model."""
