"""The adversary: disagreement objectives, input and latent search, adversarial retraining.

Searches look for inputs where a reward ensemble's members disagree (where
the training data left the reward unidentified); the retraining loop labels
what they find with the true reward and retrains. See ``docs/adversary.md``.

>>> from innerlab.adversary import disagreement, evolutionary_search, latent_search
"""

from innerlab.adversary.latent import (
    LatentSearchResult,
    activation,
    conservative_loss,
    decode_nearest,
    from_layer,
    latent_search,
    layer_names,
    pessimistic_targets,
)
from innerlab.adversary.objectives import (
    MEASURES,
    action_disagreement,
    disagreement,
    measure_fn,
    member_predictions,
    state_disagreement,
    true_gap,
)
from innerlab.adversary.planted import PlantedPair, in_planted_region, planted_pair
from innerlab.adversary.retrain import (
    PROPOSERS,
    LabelledData,
    RetrainConfig,
    TrainConfig,
    adversarial_retraining,
    label_states,
    labelled_data,
    load_checkpoint,
    propose,
    save_checkpoint,
    train_ensemble,
)
from innerlab.adversary.search import (
    METHODS,
    SearchResult,
    evolutionary_search,
    gradient_search,
    mutate_state,
    project,
    random_search,
    relax,
    search,
    soft_observation,
)

__all__ = [
    "MEASURES",
    "METHODS",
    "PROPOSERS",
    "LabelledData",
    "LatentSearchResult",
    "PlantedPair",
    "RetrainConfig",
    "SearchResult",
    "TrainConfig",
    "action_disagreement",
    "activation",
    "adversarial_retraining",
    "conservative_loss",
    "decode_nearest",
    "disagreement",
    "evolutionary_search",
    "from_layer",
    "gradient_search",
    "in_planted_region",
    "label_states",
    "labelled_data",
    "latent_search",
    "layer_names",
    "load_checkpoint",
    "measure_fn",
    "member_predictions",
    "mutate_state",
    "pessimistic_targets",
    "planted_pair",
    "project",
    "propose",
    "random_search",
    "relax",
    "save_checkpoint",
    "search",
    "soft_observation",
    "state_disagreement",
    "train_ensemble",
    "true_gap",
]
