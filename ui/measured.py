"""The numbers this lab measured and ships (ewe/measured, written by bench/publish.py), as the Learn and
Trade-offs pages read them; tests replace them here."""
from __future__ import annotations

from ewe.results import sidebyside, studies


published = studies.published          # the Learn page's numbers (ewe.results.studies)
preset_summary = studies.preset_summary      # one of its summaries: a preset as shipped, one thief
schemes_side_by_side = studies.side_by_side      # the Trade-offs page's schemes per dataset
scheme_rows = sidebyside.display_rows             # one such table as text, column -> cell
study_gains = studies.study_gains
