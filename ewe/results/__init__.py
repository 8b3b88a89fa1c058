"""Results: what a run leaves behind and how it is read.

    schema.py     file names and result.json's key names, in one place
    runs.py       Run: one run folder (its parts read and written, its models and triggers loaded); validate,
                  zip / unzip run folders
    verdicts.py   verdicts recomputed from a run folder's stored answers; thieves.json
    report.py     the paper-style markdown table and robustness curves
    studies.py    the committed bench results the app shows (bench/results/*.json[l])
    sidebyside.py every scheme under each kind of thief, per setting, from stored run folders
"""
