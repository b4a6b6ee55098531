"""Functional JAX gridworlds (gymnax API), wrappers and gymnasium adapters.

>>> import jax, innerlab.envs as envs
>>> env, params = envs.make("Orchard-v0")
>>> obs, state = env.reset(jax.random.key(0), params)
>>> obs.shape
(7, 7, 9)
"""

from innerlab.envs.core import Box, Discrete, EnvParams, Environment, params_to_dict, replace_params
from innerlab.envs.grid import GridEnvironment, GridState
from innerlab.envs.orchard import Orchard, OrchardParams
from innerlab.envs.proxy_maze import ProxyMaze, ProxyMazeParams, ProxyMazeState
from innerlab.envs.registry import list_envs, make, register

register("Orchard-v0", Orchard)
register("ProxyMaze-v0", ProxyMaze)

__all__ = [
    "Box",
    "Discrete",
    "EnvParams",
    "Environment",
    "GridEnvironment",
    "GridState",
    "Orchard",
    "OrchardParams",
    "ProxyMaze",
    "ProxyMazeParams",
    "ProxyMazeState",
    "list_envs",
    "make",
    "params_to_dict",
    "register",
    "replace_params",
]
