"""`ponder bench`: measure accuracy against inference compute on a running Ponder server.

An HTTP client only: it sends `/v1/solve` requests, grades the answers, and turns
the results into a summary table and a scaling plot. Modules, one job each:
`datasets` (problems), `arithmetic` (generated problems), `grading`, `grid` (what
to run), `client` (HTTP with retries), `store` (resumable results file),
`subsample` (best-of-N curves from one run), `sweep` (runs the grid), `report`
(summary CSV and plot), `cli`.
"""
