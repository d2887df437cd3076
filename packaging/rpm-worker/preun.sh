# %preun of gearpump-worker. $1: 0 when the package is erased, 1 or more on an upgrade.
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable --now gearpump-worker.service >/dev/null 2>&1 || :
fi
