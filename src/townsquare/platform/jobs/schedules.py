"""Where retries wait on Redis: taskiq-redis's list schedule source, made to find them.

`ListRedisScheduleSource` files a retry under a key per minute
(`<prefix>:time:2026-12-06T01:52`) and reads, on each refresh, the current minute's
key and every earlier minute's key it finds (a retry due while no scheduler ran, or
stored just before the minute turned). It reads the minute back by splitting the key
at its second `:`, which works only for a prefix without one. Ours have them
(`townsquare:retries`), so no earlier minute was ever recognised: a retry whose minute
ended before a refresh read it (stored in a minute's last seconds, or while the
scheduler was moving to another worker) was never sent. Here the minute is the part
after the last `:time:`, whatever the prefix.
"""

from __future__ import annotations

import datetime

from taskiq_redis import ListRedisScheduleSource

_TIME_PART = ":time:"
_MINUTE_FORMAT = "%Y-%m-%dT%H:%M"


class RetrySchedule(ListRedisScheduleSource):
    def _parse_time_key(self, key: str) -> datetime.datetime | None:
        prefix, found, minute = key.rpartition(_TIME_PART)
        if not found or prefix != self._prefix:
            return None
        try:
            parsed = datetime.datetime.strptime(minute, _MINUTE_FORMAT)
        except ValueError:
            return None
        return parsed.replace(tzinfo=datetime.UTC)
