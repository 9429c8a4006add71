"""Hyperparameter grids: every cell trained from scratch (run) and the grid's table, CSV and plot (report).
May import retrain, measure, search_spaces and below; only the command line imports it.
"""
