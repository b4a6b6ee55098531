"""Ray Tune's synchronous ``PopulationBasedTraining``, made to survive ``Tuner.restore``.

Imported only by :func:`innerlab.agents.pbt.ray_scheduler` (it needs Ray). A module of its
own so that the scheduler pickled in an experiment's ``tuner.pkl`` is found by name when
a later process restores it.

Why: ``Tuner.restore`` brings the scheduler back as it was built, before any generation
ran, while the trials come back with their last results, and not necessarily at one
generation (a kill catches the trials that already reported a generation waiting for
the ones that have not). The stock scheduler then goes wrong in two ways (seen with Ray
2.60; see ray-project/ray pull request 48616, closed without a merge):

- its clock restarts at generation 1, behind every trial, so it never lets one run
  again (it only runs trials behind its clock): the experiment hangs;
- told the clock, it synchronises the population as soon as the slowest trial catches
  up, while a trial that was ahead has not started again in this process: asked for a
  checkpoint, that trial has no actor to make one and the exploit waits on it forever.

:class:`ResumablePBT` therefore resumes with every unfinished trial running again and
holds the next exploit step until all of them have reached it.
"""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler


class ResumablePBT(PopulationBasedTraining):
    """``PopulationBasedTraining`` (synchronous) that resumes a restored experiment.

    When a restored trial is added, it takes that trial's score and time from its last
    result and moves the next synchronisation one interval past the furthest unfinished
    trial, so that every unfinished trial runs again. Until then a trial that reports is
    recorded and goes on (no exploit with trials that are one generation apart), and no
    exploit happens once a trial has finished. The generation the kill interrupted is
    therefore not synchronised: that is the price of resuming. A fresh experiment has
    no restored trials and runs exactly as Ray's own.
    """

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        last = trial.last_result
        if not last or self._time_attr not in last or self._metric not in last:
            return  # a fresh trial
        state = self._trial_state[trial]
        self._save_trial_state(state, last[self._time_attr], last, trial)
        if self._synch and not trial.is_finished():
            self._next_perturbation_sync = max(
                self._next_perturbation_sync,
                state.last_train_time + self._perturbation_interval)

    def on_trial_result(self, tune_controller, trial, result) -> str:
        time = result.get(self._time_attr)
        catching_up = (self._synch and time is not None and self._metric in result
                       and (time < self._next_perturbation_sync
                            or any(t.status == Trial.TERMINATED
                                   for t in tune_controller.get_trials())))
        if not catching_up:
            return super().on_trial_result(tune_controller, trial, result)
        self._save_trial_state(self._trial_state[trial], time, result, trial)
        return TrialScheduler.CONTINUE
