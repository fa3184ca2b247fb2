"""Where env and agent meet: seeded episodes, step hooks, episode records and episode logs.

``run_episode`` is the loop (:mod:`hplan.runner.loop`), ``run_episodes`` a seeded batch with
logs and a results table (:mod:`hplan.runner.episodes`), :mod:`hplan.runner.logs` the JSONL
format that ``hplan replay`` reads, :mod:`hplan.runner.summary` the aggregate metrics.
"""

from hplan.runner.episodes import episode_log_path, episode_row, episode_seed, run_episodes
from hplan.runner.logs import EpisodeLog, LogHeader, read_episode_log, write_episode_log
from hplan.runner.loop import Agent, EpisodeRecord, StepEvent, StepHook, StepRecord, obs_digest, run_episode
from hplan.runner.summary import summarize, summary_table

__all__ = [
    "Agent", "EpisodeLog", "EpisodeRecord", "LogHeader", "StepEvent", "StepHook", "StepRecord",
    "episode_log_path", "episode_row", "episode_seed", "obs_digest", "read_episode_log", "run_episode",
    "run_episodes", "summarize", "summary_table", "write_episode_log",
]
