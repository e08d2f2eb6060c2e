"""The paper's ablations (work in progress)."""

from __future__ import annotations

# name -> (what it switches off, model options, training options, paper's reported (top-1, top-5) change)
ABLATIONS = {"full": None, "no_lrn": None, "no_overlap": None, "one_tower": None, "no_lighting": None,
             "no_dropout": None}
