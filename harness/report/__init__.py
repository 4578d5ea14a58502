"""`harness report`: tables, comparisons over runs and figures of a spec, rebuilt from MLflow."""

from harness.report.build import Report, build_report

__all__ = ["Report", "build_report"]
