"""Decision logs: the schema, readers and writers."""

from __future__ import annotations

from campaignrl.logs.io import LoggedData, read_logs
from campaignrl.logs.schema import REQUIRED_COLUMNS, write_logs

__all__ = ["REQUIRED_COLUMNS", "write_logs", "read_logs", "LoggedData"]
