"""Experiments: the experiment file, the runner, pooling across replicates, figures, the report
and a synthetic study with known answers."""
