"""`ponder learn`: turn searches on a running Ponder server into training data.

A layer of its own (see DESIGN.md, "The fourth part"): it talks to the server over
HTTP only and never imports `server/`. It reuses `clients/bench` for the problems,
the grading, the HTTP client and the resumable results file. Modules, one job each:
`records` (the collected row: one problem, every sample), `overlap` (training
problems must not be evaluation problems), `collect` (runs the searches),
`sources` (reads a collect or bench folder back), `labels` (step labels),
`export` (TRL dataset files), `cli`.
"""
