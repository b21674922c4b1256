"""A private Dovecot IMAP server on a free loopback port, for the tests.

Every login name is accepted with the password below and gets its own empty maildir,
so each test uses a fresh account instead of cleaning a shared one. Started and stopped
by the pid in its own pid file; never touches the system's Dovecot.
"""

from __future__ import annotations

import imaplib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "secret"
MAIL_UID = 5000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ImapAccount:
    host: str
    port: int
    username: str
    password: str = PASSWORD

    def client(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4(self.host, self.port)
        client.login(self.username, self.password)
        return client

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        client = self.client()
        try:
            for raw in messages:
                status, detail = client.append(folder, "", None, raw)
                assert status == "OK", detail
        finally:
            client.logout()

    def flags(self, folder: str = "INBOX") -> dict[int, str]:
        """UID -> FLAGS string of every message in the folder."""
        client = self.client()
        try:
            client.select(folder)
            status, data = client.uid("FETCH", "1:*", "(FLAGS)")
            assert status == "OK", data
            out: dict[int, str] = {}
            for item in data:
                if not item:
                    continue
                text = item.decode() if isinstance(item, bytes) else item[0].decode()
                uid = int(text.split("UID ", 1)[1].split()[0].rstrip(")"))
                out[uid] = text.split("FLAGS (", 1)[1].split(")", 1)[0]
            return out
        finally:
            client.logout()


class Dovecot:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.host = "127.0.0.1"

    @property
    def pidfile(self) -> Path:
        return self.directory / "run" / "master.pid"

    def start(self) -> None:
        binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
        if not os.path.exists(binary):
            raise RuntimeError(
                "dovecot is not installed: run `make test` (it installs dovecot-imapd) "
                "or `apt-get install dovecot-imapd`"
            )
        d = self.directory
        for sub in ("run", "state", "mail"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        d.chmod(0o755)
        os.chown(d / "mail", MAIL_UID, MAIL_UID)
        (d / "dovecot.conf").write_text(
            f"""
protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
instance_name = ticket-gateway-test-{self.port}
log_path = {d}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:~/Maildir
passdb {{
  driver = static
  args = password={PASSWORD}
}}
userdb {{
  driver = static
  args = uid={MAIL_UID} gid={MAIL_UID} home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""
        )
        subprocess.run([binary, "-c", str(d / "dovecot.conf")], check=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(200).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not answer on port {self.port}; see {d}/dovecot.log")

    def stop(self) -> None:
        if not self.pidfile.exists():
            return
        pid = int(self.pidfile.read_text().strip())
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def kick(self, username: str) -> None:
        """Drop every connection of a user, as a server restart or a network cut does."""
        doveadm = shutil.which("doveadm") or "/usr/bin/doveadm"
        conf = str(self.directory / "dovecot.conf")
        subprocess.run([doveadm, "-c", conf, "kick", username], check=True, capture_output=True)

    def new_account(self) -> ImapAccount:
        return ImapAccount(self.host, self.port, f"t{uuid.uuid4().hex[:12]}@example.test")
