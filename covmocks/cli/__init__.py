"""The command line: the covmocks verbs, ``covmocks generate`` and ``covmocks rehearse``."""
