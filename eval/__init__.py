"""Evaluation tools: metrics and classical baselines. Uses only the public `codec` API."""
