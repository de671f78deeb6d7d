"""The planner's side of the replay: each program decides each day at its notice
deadline, from what was known then, as it would under `vtn serve`. Pure apart
from reading the data files once."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from flexadr.clock import ManualClock
from schedules import model
from schedules.model import Program
from schedules.planner import (DayDecision, PlannedEvent, PlannerConfig, decision_moment,
                               plan_next_day, plan_season, standing_events)
from schedules.storms import Exclusion
from vtn.planning import PlannerSources, read_exclusions, read_inputs

PROGRAMS = ("connected_solutions", "v2x_demo", "managed_charging", "byod_vpp")


@dataclass
class ReplayPlanner:
    """Decides, for each leading program, the next day once its deadline comes."""
    programs: dict[str, Program]
    sources: PlannerSources
    first_day: date
    last_day: date
    decided: dict[str, list[PlannedEvent]] = field(default_factory=dict)
    decisions: list[DayDecision] = field(default_factory=list)

    def __post_init__(self) -> None:
        leader = self.programs["connected_solutions"]
        self.inputs = read_inputs(self.sources, leader)
        self.exclusions: dict[str, tuple[Exclusion, ...]] = read_exclusions(self.sources,
                                                                            self.programs)
        self._next = {pid: self.first_day for pid, p in self.programs.items() if not p.follows}
        # The season so far: the same planner replayed up to the window, so budgets and
        # monthly caps are where they would have been on the window's first day.
        for pid in self._next:
            season = plan_season(self.programs[pid], self.first_day.year, self.inputs)
            self.decided[pid] = [e for e in season.active_events if e.day < self.first_day]
        for pid, program in self.programs.items():
            if program.follows:
                self.decided[pid] = [e for e in self.decided[program.follows]]

    def due(self, history_now: datetime) -> list[PlannedEvent]:
        """Decide every day whose notice deadline has come; the events called."""
        called = []
        for pid in list(self._next):
            program = self.programs[pid]
            while self._next[pid] <= self.last_day and \
                    decision_moment(program, self._next[pid]) <= history_now:
                called += self._decide(pid, self._next[pid])
                self._next[pid] += timedelta(days=1)
        return called

    def _decide(self, pid: str, day: date) -> list[PlannedEvent]:
        group = {p: prog for p, prog in self.programs.items() if p == pid or prog.follows == pid}
        clock = ManualClock(decision_moment(self.programs[pid], day))
        out = plan_next_day(group, self.inputs, self.decided, clock, PlannerConfig(),
                            self.exclusions)
        called = []
        for p, decision in out.items():
            self.decisions.append(decision)
            if decision.event is not None and decision.day == day:
                self.decided[p].append(decision.event)
                called.append(decision.event)
        return called

    def standing(self) -> list[PlannedEvent]:
        """Clean Peak windows of the programs that have them, every day of the window."""
        return [e for p in self.programs.values() if p.clean_peak
                for e in standing_events(p, self.first_day, self.last_day)]

    def cancelled(self, event: PlannedEvent) -> None:
        """A storm or emergency withdrew it: it no longer counts against the budget."""
        self.decided[event.program_id] = [e for e in self.decided[event.program_id]
                                          if e is not event]


def load_programs() -> dict[str, Program]:
    return {pid: model.load(pid) for pid in PROGRAMS}


def planner_sources(load_csv: Path, alerts: Path, emergencies: Path) -> PlannerSources:
    return PlannerSources(load_csv=load_csv, alerts=(alerts,), emergencies=(emergencies,))
