"""Evaluation: distances, ranking metrics (CMC, mAP, mINP), k-reciprocal re-ranking, the harness."""

from reidbench.eval.distance import DISTANCE_METRICS, compute_distance
from reidbench.eval.metrics import AP_VARIANTS, RankResult, evaluate_rank
from reidbench.eval.rerank import re_ranking

__all__ = ["AP_VARIANTS", "DISTANCE_METRICS", "RankResult", "compute_distance", "evaluate_rank", "re_ranking"]
