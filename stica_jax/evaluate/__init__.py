"""Evaluation of learned representations: linear probes, kNN, fine-tuning protocols."""
