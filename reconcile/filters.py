"""The stream filters of the transfer pipeline: the compressors of --compress (the
command on the source, the one on the target), and the sizes mbuffer is given.

Standard library only: the remote guard (executors.guard) allows exactly these.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Compressor(NamedTuple):
    compress: tuple[str, ...]
    decompress: tuple[str, ...]


COMPRESSORS: dict[str, Compressor] = {
    "gzip": Compressor(("gzip", "-3"), ("gzip", "-dc")),
    "pigz-fast": Compressor(("pigz", "-3"), ("pigz", "-dc")),
    "pigz-slow": Compressor(("pigz", "-9"), ("pigz", "-dc")),
    "zstd-fast": Compressor(("zstd", "-T0", "-3"), ("zstd", "-dc")),
    "zstd-slow": Compressor(("zstd", "-T0", "-19"), ("zstd", "-dc")),
    "zstd-adapt": Compressor(("zstd", "-T0", "--adapt"), ("zstd", "-dc")),
    "xz": Compressor(("xz",), ("xz", "-d")),
    "lzo": Compressor(("lzop",), ("lzop", "-dfc")),
    "lz4": Compressor(("lz4",), ("lz4", "-dc")),
}

#: a size for mbuffer (--buffer, --rate, --buffer-chunk-size): 128M, 1G, 512k, 50%
#: (whole: SIZE.fullmatch; at most 15 digits, more than any machine has bytes)
SIZE = re.compile(r"[0-9]{1,15}(\.[0-9]{1,6})?[bkKmMgGtT%]?", re.ASCII)
