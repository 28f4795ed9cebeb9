"""Fusion into kernel groups: legality.py (what may fuse), cost.py (what should),
groups.py (the chosen groups, the kernel schedule and the report)."""
from .groups import Kernel, Plan, annotate, fusion_report, kernels, plan, run_kernels, subgraph

__all__ = ["Kernel", "Plan", "annotate", "fusion_report", "kernels", "plan", "run_kernels", "subgraph"]
