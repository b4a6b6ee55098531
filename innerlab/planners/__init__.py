"""Planners: world models, the MCTS layer (mctx), a differentiable tree layer, baselines.

Every planner is an Equinox module ``planner(obs, key) -> PlannerOutput``.
"""

from innerlab.planners.ibp import (
    IBP,
    LatentImagination,
    TrueImagination,
    VectorImagination,
    make_imagination,
)
from innerlab.planners.mcts import MCTSLayer
from innerlab.planners.muzero import MuZeroConfig
from innerlab.planners.output import PlannerOutput
from innerlab.planners.transformer import TransformerActorCritic
from innerlab.planners.tree import TreeLayer
from innerlab.planners.world_model import WorldModel, check_aggregation

__all__ = [
    "MCTSLayer",
    "MuZeroConfig",
    "PlannerOutput",
    "TreeLayer",
    "WorldModel",
    "check_aggregation",
]
__all__ += ["IBP", "LatentImagination", "TrueImagination", "VectorImagination", "make_imagination"]
__all__ += ["TransformerActorCritic"]
