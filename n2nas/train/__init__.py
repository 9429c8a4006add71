"""Training one network on one pipeline's data: per-pipeline batches, loss and multi-crop prediction (primitives),
the EHR MLP trainer (ehr), data-parallel processes (parallel). May import data, metrics, storage and errors;
search spaces, runners, retrain and grids build on it.
"""
