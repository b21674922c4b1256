"""SMTP sink for the benchmarks: accepts everything, logs one line per message.

Usage: python bench/smtp_sink.py PORT LOGFILE [DELAY]   (stops on SIGTERM/SIGINT)
Each line of LOGFILE, tab-separated:
  <Message-ID> <recipients> <subject> <In-Reply-To> <received>
where <received> is the Unix time (time.time(), the same clock as the daemon's) at
which the end of DATA arrived, and <In-Reply-To> the customer's Message-ID the
notification answers (empty when none); tabs in the subject become spaces. With DELAY
(seconds) the 250 is held back after the line is logged, as a real server takes a while
to answer DATA (the crash test kills the daemon in that window).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from email.parser import BytesHeaderParser
from email.policy import default
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class Sink:
    def __init__(self, log: Any, delay: float = 0.0) -> None:
        self._log = log
        self._delay = delay
        self._parser = BytesHeaderParser(policy=default)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        received = time.time()
        headers = self._parser.parsebytes(envelope.original_content or b"")
        fields = (
            headers["Message-ID"],
            ",".join(envelope.rcpt_tos),
            headers["Subject"],
            headers["In-Reply-To"] or "",
            f"{received:.6f}",
        )
        self._log.write("\t".join(str(f).replace("\t", " ") for f in fields) + "\n")
        self._log.flush()
        if self._delay:
            await asyncio.sleep(self._delay)
        return "250 OK"


async def serve(port: int, log: Any, delay: float = 0.0) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sink = Sink(log, delay)
    server = await loop.create_server(lambda: SMTP(sink, ident="bench-sink"), "127.0.0.1", port)
    print("ready", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    with open(sys.argv[2], "a", encoding="utf-8") as log_file:
        delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
        asyncio.run(serve(int(sys.argv[1]), log_file, delay))
