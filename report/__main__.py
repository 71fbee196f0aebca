"""`python -m report`: the sweep's figure and tables (report's docstring says what they hold)."""

from report import main
from stages.lib.core.errors import run_stage

run_stage("report", main)
