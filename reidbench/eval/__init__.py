"""Evaluation: distances, ranking metrics (CMC, mAP, mINP), k-reciprocal re-ranking, the harness."""

from reidbench.eval.distance import DISTANCE_METRICS, compute_distance, distance_blocks
from reidbench.eval.metrics import (
    AP_VARIANTS,
    DEFAULT_MEMORY_BUDGET,
    RankResult,
    evaluate_features,
    evaluate_rank,
    evaluate_rank_features,
    memory_budget_bytes,
)
from reidbench.eval.rerank import (
    check_rerank_fits,
    re_ranking,
    re_ranking_blocks,
    re_ranking_features,
)

__all__ = ["AP_VARIANTS", "DEFAULT_MEMORY_BUDGET", "DISTANCE_METRICS", "RankResult", "check_rerank_fits",
           "compute_distance", "distance_blocks", "evaluate_features", "evaluate_rank", "evaluate_rank_features",
           "memory_budget_bytes", "re_ranking", "re_ranking_blocks", "re_ranking_features"]
