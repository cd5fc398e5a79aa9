"""Transfer pipeline options, pure: compression, buffers, rate, user pipes, as values.

Which commands they become, and where (planner.compile):

    zfs send ... | [send pipes] | [compress] | [mbuffer (buffer/rate)]     on the source
      | [decompress] | [recv pipes] | [mbuffer] | zfs recv -u -s ...        on the target

User pipe commands are split with shell rules (shlex), never passed to a shell.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import attrs

from reconcile import formats
from reconcile.errors import UsageError, quoted
from reconcile.filters import COMPRESSORS, SIZE

__all__ = ["COMPRESSORS", "TransferOptions"]

DEFAULT_COMPRESSOR = "zstd-fast"


@attrs.frozen
class TransferOptions:
    #: (checked here too: a plan file's job is read back into this class)
    compress: Optional[str] = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(COMPRESSORS))
    )
    buffer: Optional[str] = None
    rate: Optional[str] = None
    send_pipes: tuple[tuple[str, ...], ...] = ()
    recv_pipes: tuple[tuple[str, ...], ...] = ()
    #: --buffer-chunk-size: mbuffer's -s (None: 128k)
    chunk_size: Optional[str] = None

    @classmethod
    def create(
        cls,
        compress: Optional[str],
        buffer: Optional[str],
        rate: Optional[str],
        send_pipes: Sequence[str],
        recv_pipes: Sequence[str],
        chunk_size: Optional[str] = None,
    ) -> TransferOptions:
        if compress is not None and compress not in COMPRESSORS:
            raise UsageError(
                f"Invalid --compress {quoted(compress)}: allowed are {', '.join(COMPRESSORS)}"
            )
        for option, value in (
            ("--buffer", buffer),
            ("--rate", rate),
            ("--buffer-chunk-size", chunk_size),
        ):
            if value is not None and not SIZE.fullmatch(value):
                raise UsageError(
                    f"Invalid {option} {quoted(value)}: use a size such as 128M, 1G or 512k"
                )
        return cls(
            compress=compress,
            buffer=buffer,
            rate=rate,
            send_pipes=tuple(formats.split_command("--send-pipe", p) for p in send_pipes),
            recv_pipes=tuple(formats.split_command("--recv-pipe", p) for p in recv_pipes),
            chunk_size=chunk_size,
        )

    @property
    def buffered(self) -> bool:
        """mbuffer runs (as zfs-autobackup 3.3: --buffer, --buffer-chunk-size or --rate)."""
        return bool(self.buffer or self.rate or self.chunk_size)

    @property
    def active(self) -> bool:
        return bool(self.compress or self.buffered or self.send_pipes or self.recv_pipes)
