"""Experiments: the experiment file, runner, pooling, figures, report and a synthetic study.

Pooling is across replicates and conditions; the synthetic study has known answers.
"""
