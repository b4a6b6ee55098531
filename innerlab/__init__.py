"""innerlab: experiments in inner alignment.

Planning agents that learn reward models, adversaries that search for where
those reward models disagree, and the gridworlds to study them in.
Importing innerlab registers its environments with gymnasium as
``innerlab/<Name>-v0``.
"""

from innerlab import envs
from innerlab.envs.gymnasium_adapter import register_gymnasium_envs

register_gymnasium_envs()

__version__ = "0.1.0"

__all__ = ["envs", "__version__"]
