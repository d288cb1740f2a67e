"""Reporting: numbers as text, the evaluation report and its decision sections, the model card."""
