"""Monitoring and automation (issue 15): metrics on each check, alerts with delivery and
recovery notices, and policies (a schedule, N new human labels, an alert, a quality drop)
that run actions (raise drifted items in the queue, retrain, train, promote, roll back) as
recorded runs that never overlap for a project."""

from labelloop.automate.runner import Automation, CheckReport

__all__ = ["Automation", "CheckReport"]
