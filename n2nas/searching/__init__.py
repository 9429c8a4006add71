"""The search stage: the ENAS loop (loop) with its budget and plan, run folder, trial log, checkpoint, report,
progress line and summary, and multi-trial search on Ray Tune (tune). May import runners, measure, artifacts,
controllers, search_spaces and below; never retrain, export, grid or cli. (Not ``search``: that is the function.)
"""
