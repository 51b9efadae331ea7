"""What users type: ``actloss-bench`` (bench), ``actloss-report`` (report), ``actloss-matrix``
(matrix) and ``make run`` (run_all)."""
