"""Model folders, after the search: a pipeline trained into a folder of JSON + tensors (``retrain``), the folder read
and written (``folder``: the one writer of every model folder), scored on new records (``evaluate``) and exported
(``export``). ``folder`` sits low (search phases write family members with it); ``retrain`` and ``evaluate`` know
nothing of searches; ``export`` reads a folder only.
"""
