"""What crosses the broker: one envelope, encoded once.

`<origin> <published_at> <seq>\\n<body>`: the instance that published it (so it can
skip its own copy), the Unix time of publication (broker lag), the position of a
stored message (`-` for anything that is not stored) and the body, a text the
subscriber understands (a frame, a command). Local subscribers get the `Envelope`
object itself; only the copy for other processes is encoded, once per publication.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

_NO_SEQ = b"-"


class MalformedEnvelope(ValueError):
    """Bytes from the broker that are not an envelope."""


@dataclass(slots=True)
class Envelope:
    origin: str
    body: str
    seq: int | None = None
    published_at: float = field(default_factory=time.time)
    _encoded: bytes | None = field(default=None, repr=False, compare=False)

    def encode(self) -> bytes:
        if self._encoded is None:
            seq = _NO_SEQ if self.seq is None else b"%d" % self.seq
            header = b"%s %.6f %s\n" % (self.origin.encode(), self.published_at, seq)
            self._encoded = header + self.body.encode()
        return self._encoded

    @classmethod
    def decode(cls, payload: bytes) -> Envelope:
        header, newline, body = payload.partition(b"\n")
        parts = header.split(b" ")
        if not newline or len(parts) != 3:
            raise MalformedEnvelope("not an envelope")
        origin, stamp, seq = parts
        try:
            return cls(
                origin=origin.decode(),
                published_at=float(stamp),
                seq=None if seq == _NO_SEQ else int(seq),
                body=body.decode(),
            )
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedEnvelope(str(exc)) from exc
