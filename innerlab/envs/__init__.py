"""Functional JAX gridworlds (gymnax API), wrappers and gymnasium adapters.

>>> import jax, innerlab.envs as envs
>>> env, params = envs.make("Orchard-v0")
>>> obs, state = env.reset(jax.random.key(0), params)
>>> obs.shape
(7, 7, 9)
"""

from innerlab.envs.batched import batched_step, reset_where
from innerlab.envs.boost_chain import BoostChain, BoostChainParams, BoostChainState
from innerlab.envs.core import Box, Discrete, Environment, EnvParams, params_to_dict, replace_params
from innerlab.envs.egocentric import Egocentric, egocentric_view
from innerlab.envs.grid import GridEnvironment, GridState, onehot_from_int
from innerlab.envs.orchard import Orchard, OrchardParams
from innerlab.envs.proxy_maze import ProxyMaze, ProxyMazeParams, ProxyMazeState
from innerlab.envs.registry import OBSERVATIONS, list_envs, make, register, unregister
from innerlab.envs.side_channel import SideChannel, SideChannelParams, SideChannelState
from innerlab.envs.spaceship import Spaceship, SpaceshipParams, SpaceshipState
from innerlab.envs.wrappers import IntegerObs, ObservationWrapper

register("Orchard-v0", Orchard)
register("ProxyMaze-v0", ProxyMaze)
register("OrchardSideChannel-v0", lambda: SideChannel(Orchard(), name="OrchardSideChannel-v0"))
register("BoostChain-v0", BoostChain)
register("Spaceship-v0", Spaceship)

__all__ = [
    "OBSERVATIONS",
    "BoostChain",
    "BoostChainParams",
    "BoostChainState",
    "Box",
    "Discrete",
    "Egocentric",
    "EnvParams",
    "Environment",
    "GridEnvironment",
    "GridState",
    "IntegerObs",
    "ObservationWrapper",
    "Orchard",
    "OrchardParams",
    "ProxyMaze",
    "ProxyMazeParams",
    "ProxyMazeState",
    "SideChannel",
    "SideChannelParams",
    "SideChannelState",
    "Spaceship",
    "SpaceshipParams",
    "SpaceshipState",
    "batched_step",
    "egocentric_view",
    "list_envs",
    "make",
    "onehot_from_int",
    "params_to_dict",
    "register",
    "replace_params",
    "reset_where",
    "unregister",
]
