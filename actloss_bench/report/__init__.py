"""``actloss-report``: runs from MLflow -> pandas -> verdicts, tables and figures in results/."""
