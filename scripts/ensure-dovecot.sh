#!/usr/bin/env bash
# Install Dovecot's IMAP server from Debian's packages when it is missing.
# The package's own system-wide service is kept from starting (policy-rc.d):
# the tests run a private instance on a free loopback port (tests/support/dovecot.py).
set -euo pipefail
if command -v dovecot >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "ensure-dovecot: dovecot is missing; install dovecot-imapd (as root: apt-get install dovecot-imapd)" >&2
  exit 1
fi
echo "ensure-dovecot: installing dovecot-imapd from Debian ..." >&2
added_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  added_policy=1
fi
trap '[ "$added_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null
command -v dovecot >/dev/null
