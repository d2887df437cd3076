# %postun of gearpump-master. $1: 0 after an erase, 1 or more after an upgrade.
# Erase keeps /var/lib/gearpump and /var/log/gearpump (not owned by the package); a modified
# /etc/gearpump/gear.conf is kept as gear.conf.rpmsave.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -ge 1 ]; then
    # upgrade: restart the master on the new binary, only if it was running
    systemctl try-restart gearpump-master.service >/dev/null 2>&1 || :
fi
