# %postun of gearpump-worker. $1: 0 after an erase, 1 or more after an upgrade.
# Erase keeps /var/lib/gearpump-worker (not owned by the package).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -ge 1 ]; then
    # upgrade: restart the worker on the new binary, only if it was running
    systemctl try-restart gearpump-worker.service >/dev/null 2>&1 || :
fi
